"""The trials stage (see the README's Layout)."""
