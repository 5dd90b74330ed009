"""What the ``payhook`` commands share: the server options, output, and calls to the JSON API with their exit codes.

Exit codes, for scripts: 0 done; 1 the server (or the local URL) refused, or
the thing named is not found; 2 a usage error (click's); 3 the server could not
be reached.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
import requests

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3

api_url_option = click.option("--api-url", envvar="PAYHOOK_API_URL", default="http://127.0.0.1:8640",
                              show_default=True, help="The Payhook server (env PAYHOOK_API_URL).")
api_key_option = click.option("--api-key", envvar="PAYHOOK_API_KEY", required=True,
                              help="A merchant or admin API key (env PAYHOOK_API_KEY).")
merchant_option = click.option("--merchant-id", default=None, help="The merchant, needed with an admin key.")
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of text.")


def emit(as_json: bool, document: Any, text: str) -> None:
    """Print ``document`` as one line of JSON, or ``text``."""
    click.echo(json.dumps(document) if as_json else text)


def json_or_text(response: requests.Response) -> Any:
    """A response's JSON body, or its text when it is not JSON (a proxy's error page, say)."""
    try:
        return response.json()
    except ValueError:
        return response.text


def unreachable(url: str, exc: Exception) -> NoReturn:
    """Say the server could not be reached and exit 3."""
    click.echo(f"Error: could not reach {url} ({type(exc).__name__})", err=True)
    sys.exit(EXIT_UNREACHABLE)


def call(method: str, api_url: str, api_key: str, path: str, *, as_json: bool, params: dict | None = None,
         body: dict | None = None, timeout: float = 30) -> tuple[int, Any]:
    """Call the Payhook API; answer ``(status, JSON body)`` for a 2xx.

    Anything else ends the command: a refusal (4xx, 5xx; an unknown id and
    another merchant's id alike answer 404) is printed, as JSON on stdout with
    ``--json`` or as the server's message on stderr, and exits 1; a server that
    cannot be reached exits 3.
    """
    url = f"{api_url.rstrip('/')}{path}"
    query = {name: value for name, value in (params or {}).items() if value is not None}
    try:
        response = requests.request(method, url, params=query, json=body, timeout=timeout,
                                    headers={"Authorization": f"Bearer {api_key}"})
    except requests.RequestException as exc:
        unreachable(api_url, exc)
    answer = json_or_text(response)
    if response.status_code >= 300:
        if as_json:
            click.echo(json.dumps({"status": response.status_code, "answer": answer}))
        else:
            message = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
            click.echo(f"Error: {response.status_code} {message or json.dumps(answer)}", err=True)
        sys.exit(EXIT_REFUSED)
    return response.status_code, answer
