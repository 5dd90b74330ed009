"""The sandbox's one root exception."""

from __future__ import annotations


class SandboxError(Exception):
    """Anything the sandbox refuses: bad settings, a bad control request."""
