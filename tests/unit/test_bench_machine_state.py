"""benchmarks/machine_state.py: ratio statistics and the other-processes CPU of a timed section."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import machine_state as ms  # noqa: E402

HAS_PROC = Path("/proc/stat").exists()


def test_ratio_stats_hand_computed() -> None:
    # sorted [4.0, 5.0, 5.5, 6.0]: median (5 + 5.5) / 2; inclusive quartiles at positions 0.75 and 2.25
    assert ms.ratio_stats([5.5, 4.0, 6.0, 5.0]) == {"median": 5.25, "q1": 4.75, "q3": 5.625, "min": 4.0,
                                                    "max": 6.0, "rounds": 4}
    assert ms.ratio_stats([3.0]) == {"median": 3.0, "q1": 3.0, "q3": 3.0, "min": 3.0, "max": 3.0, "rounds": 1}
    # one disturbed round moves the mean, not the median
    assert ms.ratio_stats([5.1, 5.2, 5.3, 1.0, 5.4])["median"] == 5.2
    with pytest.raises(ValueError, match="no rounds"):
        ms.ratio_stats([])


def test_section_subtracts_the_benchmarks_own_cpu(monkeypatch) -> None:
    busy = iter([100.0, 101.5])  # all cores busy 1.5 s during the section
    own = iter([10.0, 10.6])  # of which the benchmark's tree took 0.6 s
    monkeypatch.setattr(ms, "_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(ms, "_tree_cpu", lambda pids: next(own))
    with ms.Section() as sec:
        time.sleep(0.05)
    assert sec.other_cpu == pytest.approx(0.9)
    assert sec.other_cores == round(0.9 / sec.wall, 2)
    monkeypatch.setattr(ms, "_busy_seconds", lambda: None)  # no /proc: not measured, not zero
    monkeypatch.setattr(ms, "_tree_cpu", lambda pids: 0.0)
    with ms.Section() as sec:
        pass
    assert sec.other_cores is None


SPIN = "import time\nt = time.time()\nwhile time.time() - t < 4: pass"


def _stranger() -> int:
    """A busy process that is not a child of this one (its parent shell exits at once)."""
    out = subprocess.run(["sh", "-c", f'{sys.executable} -c "{SPIN}" >/dev/null 2>&1 & echo $!'],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_section_counts_a_stranger_as_other() -> None:
    import psutil

    pid = _stranger()
    proc = psutil.Process(pid)
    try:
        time.sleep(0.2)
        t0 = sum(proc.cpu_times()[:2])
        with ms.Section() as sec:
            time.sleep(1.0)
        used = sum(proc.cpu_times()[:2]) - t0
        with ms.Section(extra_pids={pid}) as mine:  # declared part of the benchmark: its CPU is own
            time.sleep(0.5)
    finally:
        proc.kill()
    assert used > 0.2  # it ran
    assert sec.other_cpu >= 0.9 * used - 0.05
    assert pid in mine._pids and pid not in sec._pids


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_runnable_others_sees_a_busy_process_that_is_not_ours() -> None:
    import psutil

    pid = _stranger()
    try:
        time.sleep(0.2)
        seen = [ms.runnable_others({os.getpid()}) for _ in range(5)]
    finally:
        psutil.Process(pid).kill()
    assert max(seen) >= 1  # the spinning process is R (running or waiting for a core)
    snap = ms.snapshot()
    assert len(snap["load_avg"]) == 3 and snap["runnable_other_processes"] >= 0
