"""Payhook mail-worker: renders and sends the emails payments cause."""
