"""The vocabulary every stage shares (errors, outcomes and attempt records, the figures derived
from them, safe files); imports nothing else of closebench."""
