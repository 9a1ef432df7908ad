"""Where a `mosaicrec serve` process spends its CPU under load: per thread, and optionally py-spy.

Starts one server (batched, or ``--no-batching``), warms it up, then at each concurrency level
sends ``--requests`` requests with the raw client of ``serve_load.py`` and prints requests/s,
server and client CPU per request and the CPU per request of the server's busiest threads (the
event loop is ``MainThread``, the batch worker ``mosaicrec-batch_0``). With ``--spy gil`` (or
``cpu``) it then records a py-spy profile (raw format, one line per stack) of 12 s of load at the
last level; summarise it with ``python benchmarks/serve_probe.py --summarise FILE``.

    python benchmarks/serve_probe.py --levels 1 32 --spy gil --out /tmp/batched-gil.txt
    python benchmarks/serve_probe.py --serve-args="--no-batching" --levels 32
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load as sl  # noqa: E402  (sibling script)


def thread_cpu(srv: sl.Server) -> dict[int, tuple[str, float]]:
    """CPU seconds per thread id of the server (names from /proc, e.g. MainThread's is the process')."""
    out = {}
    for t in srv.ps.threads():
        try:
            name = Path(f"/proc/{srv.proc.pid}/task/{t.id}/comm").read_text().strip()
        except OSError:
            name = "?"
        out[t.id] = ("MainThread" if t.id == srv.proc.pid else name, t.user_time + t.system_time)
    return out


def summarise(path: Path, top: int = 30) -> None:
    """Share of samples per thread and per innermost frame of a py-spy raw profile."""
    total, threads, frames = 0, collections.Counter[str](), collections.Counter[tuple[str, str]]()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        parts = stack.split(";")
        total += int(n)
        threads[parts[0]] += int(n)
        frames[(parts[0].split(":")[-1].strip()[:24], parts[-1])] += int(n)
    print(f"{total} samples")
    for name, n in threads.most_common():
        print(f"{100 * n / total:5.1f}% {name}")
    for (thread, frame), n in frames.most_common(top):
        print(f"{100 * n / total:5.1f}% {thread:24s} {frame}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=sl.REPO / "runs" / "serve-ml1m-sasrec")
    p.add_argument("--serve-args", default="", help="more `mosaicrec serve` options (one string)")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 32])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--spy", choices=["gil", "cpu"], help="record a py-spy profile at the last level")
    p.add_argument("--out", type=Path, default=Path("/tmp/serve_probe.txt"), help="the py-spy profile")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="py-spy --native: C/Cython frames too (uvloop, httptools)")
    p.add_argument("--summarise", type=Path, metavar="FILE", help="only summarise a py-spy raw profile")
    args = p.parse_args(argv)
    if args.summarise:
        summarise(args.summarise)
        return 0
    bodies = sl.histories(args.run_dir, 2000, 200)
    srv = sl.Server(args.run_dir, ["--threads", "1", *args.serve_args.split()], "probe", 1)
    try:
        srv.measure(bodies, 4, 100, 60, "raw")  # warm-up
        for c in args.levels:
            before = thread_cpu(srv)
            m: dict[str, Any] = srv.measure(bodies, c, args.requests, 60, "raw")
            after = thread_cpu(srv)
            ok = max(m["status"].get(200, 0), 1)
            per = sorted(((after[k][1] - before.get(k, ("", 0.0))[1], after[k][0]) for k in after), reverse=True)
            print(f"c{c}: {ok / m['seconds']:.0f} requests/s, server {1000 * m['server_cpu'] / ok:.3f} ms/request "
                  f"(busiest threads: {', '.join(f'{n} {1000 * s / ok:.3f}' for s, n in per[:3])}), "
                  f"client {1000 * m['client_cpu'] / ok:.3f} ms/request, {m['batches']} batches, "
                  f"other processes {m['other_cores']} cores", flush=True)
        if args.spy:
            cmd = ["py-spy", "record", "-r", str(args.rate), "-d", "12", "-p", str(srv.proc.pid), "-f", "raw",
                   "-o", str(args.out), "--threads", *(["--gil"] if args.spy == "gil" else []),
                   *(["--native"] if args.native else [])]
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            srv.measure(bodies, args.levels[-1], 10**6, 11, "raw")
            spy.wait()
            summarise(args.out)
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
