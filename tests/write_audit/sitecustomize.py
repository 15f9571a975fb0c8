"""Loaded by every Python process of a test run that puts this folder on PYTHONPATH: records each write to a
file or folder under WRITE_AUDIT_ROOT (opens for writing, renames, removals, new folders) with the process's
RANK, one JSON line per event in WRITE_AUDIT_LOG. Tests read it to check that only the main process writes."""

import json
import os
import sys

ROOT = os.environ.get("WRITE_AUDIT_ROOT")
LOG = os.environ.get("WRITE_AUDIT_LOG")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = {"os.rename": "rename", "os.replace": "rename", "os.remove": "remove", "shutil.rmtree": "rmtree"}


def _under_root(path) -> bool:
    try:
        return os.path.abspath(os.fsdecode(path)).startswith(ROOT)
    except (TypeError, ValueError):
        return False


def _record(kind: str, path) -> None:
    entry = {"rank": os.environ.get("RANK", "0"), "pid": os.getpid(), "kind": kind, "path": os.fsdecode(path)}
    descriptor = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # its own "open" event is skipped below
    try:
        os.write(descriptor, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(descriptor)


def _hook(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = args[0], args[1], args[2] if len(args) > 2 else 0
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        if writing and _under_root(path) and os.path.abspath(os.fsdecode(path)) != LOG:
            _record("write", path)
    elif event in EVENTS and args and _under_root(args[0]):
        _record(EVENTS[event], args[0])
    elif event == "os.mkdir" and args and _under_root(args[0]):
        _record("mkdir", args[0])


if ROOT and LOG:
    ROOT = os.path.abspath(ROOT)
    sys.addaudithook(_hook)
