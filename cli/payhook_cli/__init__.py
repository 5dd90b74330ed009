"""The ``payhook`` command line: local development against a Payhook server."""

__version__ = "0.1.0"
