"""The CLI installs on its own: a fresh virtualenv with only its package and its declared dependencies."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

CLI = Path(__file__).parents[2] / "cli"


@pytest.mark.slow
def test_e_the_cli_installs_into_a_fresh_virtualenv(tmp_path):
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(CLI)], check=True, timeout=300)
    done = subprocess.run([str(tmp_path / "venv" / "bin" / "payhook"), "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "payhook, version 0.1.0"
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                               check=True).stdout.lower()
    # Nothing of the server came along.
    for server_package in ("flask", "sqlalchemy", "dramatiq", "payhook-shared", "gunicorn", "redis"):
        assert f"{server_package}==" not in installed
