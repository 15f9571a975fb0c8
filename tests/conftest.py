"""Shared fixtures. Tests run offline on data and weights that registry packages ship."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_script(script: str, *args: str, stdin: str | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a recipe the way a user does, as a separate process from the repository root."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


def folder_snapshot(path: str) -> dict:
    """Every file under `path` with its size and modification time, to show nothing changed."""
    snapshot = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            stat = os.stat(full)
            snapshot[os.path.relpath(full, path)] = (stat.st_size, stat.st_mtime_ns)
    return snapshot


@pytest.fixture
def write_file(tmp_path):
    def write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return str(path)

    return write
