"""authnode: a self-hosted email-and-password authentication service."""

__version__ = "0.1.0"
