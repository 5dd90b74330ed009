"""How the packages hang together: no import circles, nothing built at import, no service importing another."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "payhook_shared": ROOT / "shared" / "payhook_shared",
    "payhook_webhook": ROOT / "services" / "webhook-service" / "payhook_webhook",
    "payhook_delivery": ROOT / "services" / "delivery-worker" / "payhook_delivery",
    "payhook_mail": ROOT / "services" / "mail-worker" / "payhook_mail",
    # A dev and test tool, not a service, held to the same rules (it may also use payhook_cli's generator).
    "payhook_sandbox": ROOT / "sandbox" / "payhook_sandbox",
}
SERVICES = {"payhook_webhook", "payhook_delivery", "payhook_mail"}
# Entry points build things on purpose: the WSGI module is the app, __main__ runs the process, gunicorn's
# configuration file is read from the environment when gunicorn loads it.
ENTRY_POINTS = {"wsgi", "__main__", "gunicorn_conf"}


def _modules(package: str) -> dict[str, Path]:
    root = PACKAGES[package]
    found = {}
    for path in root.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that ``name`` imports, wherever the import statement stands (functions, TYPE_CHECKING)."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [f"{module}.{alias.name}" for alias in node.names]
            # ``from package import module`` needs the module, not the package's own names.
            candidates = submodules + ([module] if not all(m in known for m in submodules) else [])
        else:
            continue
        targets.update(c for c in candidates if c in known)
    return targets - {name}


def _graph() -> dict[str, set[str]]:
    modules = {name: path for package in PACKAGES for name, path in _modules(package).items()}
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_is_seen():
    graph = _graph()
    assert "payhook_delivery.runtime" in graph["payhook_delivery.app"]
    assert "payhook_shared.workers" in graph["payhook_mail.broker"]


def test_no_import_circle_in_any_package():
    assert _cycle(_graph()) is None


def test_a_planted_circle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_libraries_and_services_import_only_what_they_may():
    for name, targets in _graph().items():
        package = name.split(".")[0]
        foreign = {t.split(".")[0] for t in targets} - {package, "payhook_shared"}
        assert not foreign, f"{name} imports {foreign}: services are never imported by other services"


def test_nothing_is_built_at_import():
    """Importing every module (entry points aside) reads no settings, makes no broker and opens no connection.

    Settings that cannot be converted make any ``Settings.from_env()`` at import fail; Dramatiq's global
    broker stays unset.
    """
    modules = [name for package in PACKAGES for name in _modules(package) if name.rsplit(".", 1)[-1]
               not in ENTRY_POINTS]
    script = "\n".join([
        "import importlib, dramatiq.broker",
        *[f"importlib.import_module({m!r})" for m in modules],
        "assert dramatiq.broker.global_broker is None, 'a broker was built at import'",
        "print('ok', len(%r))" % modules,
    ])
    env = {**os.environ, "THREADS": "not-a-number", "SWEEP_INTERVAL": "not-a-number",
           "WEB_WORKERS": "not-a-number", "REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "nowhere://"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_each_worker_and_the_app_have_one_startup_function(package):
    entry = {"payhook_webhook": ("app", "create_app"), "payhook_delivery": ("app", "setup"),
             "payhook_mail": ("app", "setup")}[package]
    tree = ast.parse((PACKAGES[package] / f"{entry[0]}.py").read_text())
    assert entry[1] in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def _private_imports(name: str, path: Path, known: set[str]) -> list[str]:
    """The underscore names of other modules of ours that ``name`` imports or reaches through an imported module."""
    is_package = path.name == "__init__.py"
    found, aliases = [], {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                if f"{module}.{alias.name}" in known:
                    aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
                elif module in known and module != name and alias.name.startswith("_"):
                    found.append(f"{module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_no_service_module_imports_another_modules_private_names():
    """What a module keeps to itself (``_name``) stays there: what others need is public, where it belongs."""
    modules = {name: path for package in PACKAGES for name, path in _modules(package).items()}
    borrowed = {name: found for name, path in modules.items() if name.split(".")[0] in SERVICES
                and (found := _private_imports(name, path, set(modules)))}
    assert borrowed == {}


def test_a_planted_private_import_is_found(tmp_path):
    module = tmp_path / "views.py"
    module.write_text("from ..api.management import _page, merchant_json\nfrom ..api import keys\nkeys._iso(None)\n")
    known = {"pkg.console.views", "pkg.api", "pkg.api.management", "pkg.api.keys"}
    assert _private_imports("pkg.console.views", module, known) == ["pkg.api.management._page", "pkg.api.keys._iso"]


def _front_end(module: str) -> str | None:
    """Which of the webhook-service's front ends ``module`` belongs to: the JSON API, the console or the CLI."""
    parts = module.split(".")
    if parts[0] != "payhook_webhook" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ("api", "console", "cli") else None


def test_the_webhook_service_front_ends_do_not_import_one_another():
    """``api/``, ``console/`` and ``cli.py`` share ``services/`` (and ``schemas.py``), never one another's modules."""
    crossing = {name: sorted(t for t in targets if _front_end(t) not in (None, _front_end(name)))
                for name, targets in _graph().items() if _front_end(name)}
    assert {name: targets for name, targets in crossing.items() if targets} == {}
