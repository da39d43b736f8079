"""closebench: what each way of getting rid of an abusive TCP client costs both sides."""

__version__ = "0.1.0"
