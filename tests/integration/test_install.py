"""The wheel, installed in a fresh virtualenv outside the checkout, runs a broker and a round
trip through it: nothing it needs may come from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import TEST_PORT

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# beside the session's broker (TEST_PORT) and the cluster's, with its controller port after it
PORT = int(os.environ.get("SMI_TEST_INSTALL_PORT", TEST_PORT + 10))
DEVICE = "00-DB-12-34-56-78-77-01"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
REQUEST = json.dumps({"request_id": f"{SUPPLIER}:{DEVICE}:1", "sr": "11.2",
                      "originator": SUPPLIER, "device_id": DEVICE, "at": "2026-11-24T08:00:00Z"})


def run(*args: str | Path, cwd: Path, env: dict[str, str], data: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, input=data, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the wheel built from this checkout and its dependencies."""
    root = tmp_path_factory.mktemp("install")
    source = copy_sources(root / "source")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist",
                source, cwd=root, env=dict(os.environ))
    assert built.returncode == 0, built.stderr
    wheel, = (root / "dist").glob("smi_streams-*.whl")
    venv.create(root / "venv", with_pip=True)
    pip = run(root / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=root,
              env=dict(os.environ), timeout=900)
    assert pip.returncode == 0, pip.stderr
    return root / "venv" / "bin"


def copy_sources(to: Path) -> Path:
    """What the Dockerfile copies, so the build leaves nothing in the checkout (setuptools'
    build/) and proves these files are all a wheel needs."""
    for name in ("pyproject.toml", "README.md"):
        to.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, to / name)
    for folder in ("streams", "schemas", "tests/scenarios"):
        shutil.copytree(REPO / folder, to / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return to


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment without this checkout's virtualenv or settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SMI_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "SMI_KAFKA_HOME": str(tmp_path / "kafka"), "SMI_PARTITIONS": "1",
            "SMI_BROKER": f"127.0.0.1:{PORT}"}


def test_the_installed_package_stands_on_its_own(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env(tmp_path)
    smi = installed / "smi"

    where = run(installed / "python", "-c", "import streams; print(streams.__file__)",
                cwd=work, env=env)
    assert where.stdout.startswith(str(installed.parent)), where.stdout
    story = run(installed / "python", "-c", "from streams.tools.demo import STORY; "
                "print(STORY.read_text())", cwd=work, env=env)  # what `smi demo` plays
    assert story.returncode == 0 and json.loads(story.stdout)["steps"], story.stderr
    version = run(smi, "--version", cwd=work, env=env)
    assert version.returncode == 0 and version.stdout.startswith("smi 0."), version

    up = run(smi, "kafka", "up", "--port", str(PORT), cwd=work, env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"127.0.0.1:{PORT}" in up.stdout and str(tmp_path / "kafka") in up.stdout

        missing = run(smi, "produce", "duis.service-requests", cwd=work, env=env, data=REQUEST)
        assert missing.returncode == 1 and "there is no topic" in missing.stderr, missing
        sent = run(smi, "produce", "duis.service-requests", "--create", cwd=work, env=env,
                   data=REQUEST + "\n")
        assert sent.returncode == 0 and "sent 1, refused 0" in sent.stderr, sent
        tailed = run(smi, "tail", "duis.service-requests", "--from-beginning", "--max", "1",
                     "--json", cwd=work, env=env, timeout=120)
        assert tailed.returncode == 0, tailed.stderr
        message = json.loads(tailed.stdout)
        assert message["key"] == DEVICE and message["value"] == json.loads(REQUEST)
        assert {"partition", "offset", "timestamp"} <= message.keys()
    finally:
        down = run(smi, "kafka", "down", "--port", str(PORT), "--purge", cwd=work, env=env)
    assert down.returncode == 0 and "stopped 1 kafka node(s)" in down.stdout, down
