"""Small shared helpers: atomic writes, content hashes, JSON manifests, devices, seeds."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A failed or killed writer leaves at most a ``.tmp`` file that no stage reads.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` across processes (and threads) of one machine.

    Blocks until the lock is free. A no-op without a path or where ``fcntl`` is missing
    (Windows: a single writer is assumed). The lock file itself is never removed.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        path = None
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_obj(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (keys sorted)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())[:16]


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    import subprocess

    from mosaicrec import __version__

    src = Path(__file__).resolve().parents[2]
    if not (src / ".git").exists():  # an installed package, not a checkout
        return __version__
    try:
        out = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=src, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{out.stdout.strip()}" if out.returncode == 0 else __version__


def wait_healthy(proc: Any, url: str, timeout: float, what: str, detail: Any = None, poll: float = 0.5) -> None:
    """Wait until ``GET url`` answers 200 while the child process ``proc`` (a ``Popen``) runs.

    Raises RuntimeError naming ``what`` when the process exits first (plus ``detail()``, e.g. the
    tail of its log) or when ``timeout`` seconds pass (the process is then terminated).
    """
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            extra = f": {detail()}" if detail is not None else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode}{extra}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    proc.terminate()
    raise RuntimeError(f"{what} did not answer {url} with 200 within {timeout:.0f} s")
