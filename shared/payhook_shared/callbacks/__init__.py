"""Schemas for what providers post to Payhook, and their normalisation."""

from .base import parse_json, validation_message

__all__ = ["parse_json", "validation_message"]
