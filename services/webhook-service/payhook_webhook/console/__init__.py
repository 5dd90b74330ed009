"""The web console at ``/console``: operators and merchants see payments, deliveries and failures, and fix them.

Server-rendered Jinja2 pages; every asset is served from ``static/``. An admin
API key sees every merchant, a merchant key only its own: the scope is applied
in ``queries.py``, the one place the console reads or changes rows.
"""

from .security import init_app
from .views import bp

__all__ = ["bp", "init_app"]
