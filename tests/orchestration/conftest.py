"""Helpers shared by the orchestration tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

# A process holding the DuckDB file lock of the warehouse argv[1] until its stdin closes.
HOLD_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 150) -> Any:
    """`condition()` once it is truthy (polled every second); fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"Still waiting for {what} after {timeout_s} s.")
        time.sleep(1)
    return result
