"""Fixtures: the real `quorate` binary and the artefacts of a real local mesh (`quorate demo`)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def quorate_bin() -> Path:
    exe = Path(os.environ.get("QUORATE_BIN", ROOT / "target" / "debug" / "quorate"))
    assert exe.is_file(), f"{exe} is missing: run `cargo build --workspace --bins` first"
    return exe


@pytest.fixture(scope="session")
def demo(tmp_path_factory, quorate_bin) -> Path:
    """What `quorate demo --keep` leaves: roster, keys, receipts (an aggregate among them) and
    every node's audit log, from node processes on 127.0.0.1 that it stopped."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    run = subprocess.run(
        [quorate_bin, "demo", "--nodes", "3", "--keep", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def cli_json(quorate_bin, *args, cwd=None):
    """`quorate verify ARGS --json`: (exit status, parsed report)."""
    run = subprocess.run(
        [quorate_bin, "verify", *map(str, args), "--json"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    return run.returncode, json.loads(run.stdout)
