"""The wire stage (see the README's Layout)."""
