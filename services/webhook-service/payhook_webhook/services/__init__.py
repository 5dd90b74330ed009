"""The webhook-service's operations, behind its three front ends: the JSON API (``api/``), the console
(``console/``) and the ``flask`` commands (``cli.py``).

Each operation takes a session (or the store), the principal acting and input its caller has already
validated, returns rows or dicts, and raises the package's errors (``errors.py``); none reads the request.
The front ends call these and never one another.

- ``common``: paging and time formatting every listing shares.
- ``merchants``: merchants, their settings and their M-Pesa callback URLs.
- ``endpoints``: webhook endpoints, their secrets and their health.
- ``sources``: inbound gateway sources and their secrets.
- ``keys``: API keys.
- ``events``: events given through the API, and test events.
- ``replays``: resending events and replaying endpoints.
"""
