"""Payhook's protocol package, shared by every service.

It holds what the services must agree on — message schemas, priority levels,
queue names, webhook signing, callback schemas and the store — and nothing that
runs on its own: no Flask, no actors, no entry points.
"""
