"""gunicorn's own logs (error log, access log) with callback URL tokens redacted.

gunicorn's loggers do not propagate to the root logger the app configures, so the app's scrubbing
never sees them: the request line of every access log line, and "Error handling request <uri>",
would carry the token of ``/cb/…`` and ``/in/…`` URLs.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from payhook_shared.logs import Scrub


class RedactingLogger(Logger):
    """gunicorn's logger, its error and access records scrubbed (``payhook_shared.logs.scrub``)."""

    def setup(self, cfg) -> None:
        """Set up gunicorn's handlers, then scrub every record of its two loggers."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, Scrub) for f in log.filters):
                log.addFilter(Scrub())
