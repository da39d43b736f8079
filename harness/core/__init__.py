"""The core stage (see the README's Layout)."""
