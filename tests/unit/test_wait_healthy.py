"""utils.wait_healthy: the start-up wait shared by the serving test and the benchmark scripts."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from mosaicrec.utils import wait_healthy


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_process_exiting_first_is_named_with_detail():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.wait(timeout=30)
    with pytest.raises(RuntimeError, match=r"toy server exited with code 3: last log line"):
        wait_healthy(proc, f"http://127.0.0.1:{_closed_port()}/health", 5, "toy server", detail=lambda: "last log line")


def test_timeout_terminates_the_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError, match=r"toy server did not answer .* within 1 s"):
            wait_healthy(proc, f"http://127.0.0.1:{_closed_port()}/health", 1, "toy server", poll=0.1)
        assert proc.wait(timeout=10) is not None  # terminated by wait_healthy
    finally:
        proc.kill()
