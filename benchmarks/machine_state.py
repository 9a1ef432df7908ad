"""What else the machine did while a benchmark timed something, and robust ratio statistics.

Speed ratios measured on a shared 2-core machine (batched against one-by-one encoding in
``features_speed.py``, micro-batched against one-request-per-forward serving in
``serve_load.py``) move with the other processes' CPU use. The benchmarks therefore record,
for every timed section (:class:`Section`), the CPU time that processes outside the benchmark's
own process tree took meanwhile (from ``/proc/stat`` minus the tree's own CPU time, as
"cores": 1.0 = one of the two cores fully taken by others), the load average and the number of
other runnable processes, and they report per-round ratios with their median and spread
(:func:`ratio_stats`) beside the pooled ratio.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: user, nice, system, irq,
    softirq, steal), or None where there is no /proc."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _tree_pids(root: int) -> set[int]:
    import psutil

    try:
        proc = psutil.Process(root)
        return {root, *(c.pid for c in proc.children(recursive=True))}
    except psutil.Error:
        return {root}


def _tree_cpu(pids: set[int]) -> float:
    """User + system CPU seconds of ``pids`` (processes that are gone count 0)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def runnable_others(own: set[int] | None = None) -> int:
    """Processes in state R (running or waiting for a CPU) outside ``own`` (default: this
    process and its children), counted from ``/proc/<pid>/stat``; -1 where there is no /proc."""
    own = own if own is not None else _tree_pids(os.getpid())
    try:
        entries = os.listdir("/proc")
    except OSError:
        return -1
    n = 0
    for name in entries:
        if not name.isdigit() or int(name) in own:
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        if stat[stat.rindex(")") + 2:].startswith("R"):  # the state follows "(comm) "
            n += 1
    return n


def snapshot() -> dict[str, Any]:
    """Load average and other runnable processes now."""
    return {"load_avg": [round(x, 2) for x in os.getloadavg()], "runnable_other_processes": runnable_others()}


class Section:
    """Times a section and measures the CPU the rest of the machine used meanwhile.

    ``with Section() as s: ...`` then ``s.wall`` (s), ``s.cpu`` (this process' CPU time, all
    threads), ``s.other_cores`` (CPU seconds of processes outside this process' tree per wall
    second). ``extra_pids``: processes of the benchmark that are not children of this one.
    Sections can be re-entered; the times accumulate.
    """

    def __init__(self, extra_pids: set[int] | None = None) -> None:
        self.extra = set(extra_pids or ())
        self.wall = self.cpu = self.other_cpu = 0.0
        self.measured = True

    def __enter__(self) -> Section:
        self._pids = _tree_pids(os.getpid()) | self.extra
        self._busy0, self._own0 = _busy_seconds(), _tree_cpu(self._pids)
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c
        busy1, own1 = _busy_seconds(), _tree_cpu(self._pids)
        if busy1 is None or self._busy0 is None:
            self.measured = False
        else:
            self.other_cpu += max(0.0, (busy1 - self._busy0) - (own1 - self._own0))

    @property
    def other_cores(self) -> float | None:
        """Mean number of cores that other processes kept busy during the section."""
        return round(self.other_cpu / self.wall, 2) if self.measured and self.wall > 0 else None


def ratio_stats(ratios: list[float]) -> dict[str, Any]:
    """Median, quartiles (``statistics.quantiles``, inclusive method), min and max of per-round
    ratios, e.g. [4.0, 5.0, 6.0, 5.5] -> median 5.25, q1 4.75, q3 5.625, min 4.0, max 6.0."""
    if not ratios:
        raise ValueError("ratio_stats: no rounds")
    xs = sorted(float(r) for r in ratios)
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0], xs[0], xs[0])
    return {"median": round(statistics.median(xs), 3), "q1": round(q1, 3), "q3": round(q3, 3),
            "min": round(xs[0], 3), "max": round(xs[-1], 3), "rounds": len(xs)}
