"""Payhook delivery-worker: delivers events to merchant endpoints as signed webhooks."""
