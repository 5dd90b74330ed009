"""A local Safaricom Daraja sandbox: the provider Payhook's tests and ``make run`` talk to (docs/sandbox.md)."""

__version__ = "0.1.0"
