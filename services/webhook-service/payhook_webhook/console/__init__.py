"""The web console at ``/console``: operators and merchants see payments, deliveries and failures, and fix them.

Server-rendered Jinja2 pages; every asset is served from ``static/``. An admin
API key (or an operator's emailed sign-in link) sees every merchant, a merchant
key (or link) only its own: the scope is applied in ``queries.py``, the one
place the console reads or changes a merchant's rows. Sign-in links, which
belong to no scope until used, live in ``links.py``; the settings form is read
in ``settings_form.py`` and judged by the shared settings schema.
"""

from .security import init_app
from .views import bp

__all__ = ["bp", "init_app"]
