"""The results stage (see the README's Layout)."""
