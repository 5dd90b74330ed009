"""``make run``: migrate, seed the demo merchant, show how to try it, then run every process.

Everything runs on project ports (Redis 6479, web 8640, demo receiver 8641, Daraja sandbox 8645) so
a Redis, PostgreSQL or anything else already on the standard ports is left alone.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REDIS_PORT = int(os.environ.get("PAYHOOK_REDIS_PORT", "6479"))
WEB_PORT = 8640
RECEIVER_PORT = int(os.environ.get("PAYHOOK_RECEIVER_PORT", "8641"))
SANDBOX_PORT = int(os.environ.get("PAYHOOK_SANDBOX_PORT", "8645"))

DEFAULTS = {
    "DATABASE_URL": "sqlite:///var/payhook.db",
    "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
    "PAYHOOK_REDIS_PORT": str(REDIS_PORT),
    "PAYHOOK_RECEIVER_PORT": str(RECEIVER_PORT),
    "PAYHOOK_SANDBOX_PORT": str(SANDBOX_PORT),
    "BIND": f"127.0.0.1:{WEB_PORT}",
    "PUBLIC_BASE_URL": f"http://127.0.0.1:{WEB_PORT}",
    "LOG_FORMAT": "text",
    "PROCESSES": "1",
    "PYTHONUNBUFFERED": "1",
    # The demo receiver listens on 127.0.0.1, which the SSRF guard refuses unless allowlisted.
    "ENDPOINT_ALLOWLIST": "127.0.0.0/8",
    # The console is served over plain HTTP here; production keeps CONSOLE_COOKIE_SECURE on.
    "CONSOLE_COOKIE_SECURE": "false",
    # May ask the console for an operator sign-in link; the email lands in var/outbox/.
    "CONSOLE_OPERATOR_EMAILS": "ops@demo.payhook.test",
    # The workers' health and metrics ports are for this machine only.
    "HEALTH_HOST": "127.0.0.1",
    # STK Pushes go to the local Daraja sandbox; a dropped callback is reconciled within seconds, not minutes.
    "DARAJA_SANDBOX_URL": f"http://127.0.0.1:{SANDBOX_PORT}",
    "RECONCILE_AFTER": "10",
    "RECONCILE_INTERVAL": "1",
}


def stk_push_curl(base_url: str, demo: dict, reference: str = "INV-1", key: str = "demo-1") -> str:
    """The ``curl`` that makes the demo merchant's STK Push through Payhook at the local sandbox (as printed)."""
    body = (f'{{"merchant_id": "{demo["merchant_id"]}", "amount": 100, "phone": "0708374149",\n'
            f'      "account_reference": "{reference}", "description": "Order 1", "idempotency_key": "{key}"}}')
    return (f'curl -sS {base_url}/v1/mpesa/stk-push -H "Authorization: Bearer {demo["admin_api_key"]}" \\\n'
            f"      -H 'Content-Type: application/json' -d '{body}'")


def _busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    """Prepare the stack and hand over to honcho (Ctrl-C stops every process)."""
    os.chdir(ROOT)
    env = {**DEFAULTS, **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # One console key shared by every gunicorn worker of this run, so a session works on each of them.
    env.setdefault("CONSOLE_SECRET_KEY", secrets.token_hex(32))
    busy = [p for p in (REDIS_PORT, WEB_PORT, RECEIVER_PORT, SANDBOX_PORT) if _busy(p)]
    if busy:
        sys.exit(f"port(s) {busy} already in use on 127.0.0.1: is another `make run` still up?")
    for folder in ("var/redis", "var/outbox"):
        (ROOT / folder).mkdir(parents=True, exist_ok=True)
    flask = [str(BIN / "flask"), "--app", "payhook_webhook.app"]
    subprocess.run([*flask, "migrate"], env=env, check=True)
    subprocess.run([*flask, "seed-demo", "--daraja-sandbox", "--receiver-url",
                    f"http://127.0.0.1:{RECEIVER_PORT}/webhooks"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    demo = json.loads((ROOT / "var/demo.json").read_text())
    stk_url = demo["callback_urls"]["stk"]
    # The venv's own command, as the user's shell may not have the venv on its PATH.
    payhook = os.path.relpath(BIN / "payhook", ROOT)
    listen = (f"{payhook} listen --api-url http://127.0.0.1:{WEB_PORT} --merchant-id {demo['merchant_id']} "
              "--forward-to http://localhost:3000/webhooks")
    print(f"""
Payhook is starting.
  STK callback URL (demo merchant): {stk_url}
  Try it (a signed webhook reaches the demo receiver; the merchant's notice and the buyer's
  receipt land in var/outbox/):

    curl -sS -H 'Content-Type: application/json' --data @tests/fixtures/mpesa/stk_success.json {stk_url}

  The same callback again is a duplicate: accepted, but not delivered twice.

  Or let Payhook make an STK Push at the local Daraja sandbox; its callback comes back about 2 s later
  and is delivered. With "account_reference": "SBX0D" the sandbox drops the callback, and Payhook's
  reconciler asks Daraja (STK Push Query) after RECONCILE_AFTER ({env["RECONCILE_AFTER"]} s here) and delivers the answer,
  its data.source "query" (docs/mpesa.md#reconciliation). Another push needs another
  idempotency_key:

    {stk_push_curl(f"http://127.0.0.1:{WEB_PORT}", demo)}

  Or receive the demo merchant's events on your own machine, signed with a session secret
  (docs/cli.md), and send it any Daraja callback:

    PAYHOOK_API_KEY={demo["admin_api_key"]} {listen}
    {payhook} simulate stk --result-code 1032 --to {stk_url.rsplit("/", 1)[0]}

  Console: http://127.0.0.1:{WEB_PORT}/console  (sign in with the demo admin API key below, or ask
  for a sign-in link for {env["CONSOLE_OPERATOR_EMAILS"].split(",")[0]} (operator) or merchant@demo.payhook.test
  (the demo merchant): it lands in var/outbox/)
  Demo admin API key: {demo["admin_api_key"]}
  Daraja sandbox (a local Safaricom, docs/sandbox.md): http://127.0.0.1:{SANDBOX_PORT}
  Ctrl-C stops everything.
""", flush=True)
    os.execve(str(BIN / "honcho"), [str(BIN / "honcho"), "start", "-f", "Procfile"], env)


if __name__ == "__main__":
    main()
