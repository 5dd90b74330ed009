"""``payhook-daraja-sandbox``: serve the sandbox with a threaded server until Ctrl-C."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from werkzeug.serving import make_server

from . import __version__
from .app import create_app
from .errors import SandboxError
from .settings import Settings, load


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payhook-daraja-sandbox",
                                     description="A local Safaricom Daraja sandbox (docs/sandbox.md). "
                                                 "Each flag overrides its SANDBOX_* variable.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for field in dataclasses.fields(Settings):
        kind = {"int": int, "float": float}.get(str(field.type), str)
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=kind, default=None,
                            help=f"default {field.default!r}, or SANDBOX_{field.name.upper()}")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, build the app and serve it, one thread per request."""
    args = _parser().parse_args(argv)
    try:
        settings = load(**vars(args))
    except SandboxError as exc:
        sys.exit(f"payhook-daraja-sandbox: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(message)s")
    app = create_app(settings)
    server = make_server(settings.host, settings.port, app, threaded=True)
    print(f"Daraja sandbox on http://{settings.host}:{server.port} (short code {settings.shortcode})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.extensions["payhook_sandbox"].dispatcher.stop()


if __name__ == "__main__":
    main()
