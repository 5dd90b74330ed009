"""Payhook webhook-service: the HTTP door providers and merchants call."""
