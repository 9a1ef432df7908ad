"""A/B of two source trees' `mosaicrec serve` at 32 clients, interleaved on the same machine.

    python benchmarks/serve_ab.py --base /tmp/base --run-dir runs/serve-ml1m-sasrec \\
        --modes batched --rounds 6 --requests 500

``--base`` / ``--new`` are source trees (a ``git archive`` of a commit unpacked somewhere, or this
checkout, the default for both); ``--base-args`` / ``--new-args`` add ``mosaicrec serve`` options
and ``--base-env`` / ``--new-env`` environment variables to one side, so two settings of the same
tree can be compared too::

    python benchmarks/serve_ab.py --new-args="--max-batch 16" --modes batched

Each side runs its own ``src`` in its own server process, all
servers are up at once, and every round measures each (tree, mode) once, in an order that is
reversed every other round (the second of a pair ran measurably slower). Prints requests/s,
server and client CPU ms per request and the cores that server and client kept busy together
((server + client CPU) / wall) per round and their means; ``--json`` writes them. Uses the client of
``serve_load.py`` (raw keep-alive HTTP/1.1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load as sl  # noqa: E402  (sibling script)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=sl.REPO, help="source tree A (default: this checkout)")
    p.add_argument("--new", type=Path, default=sl.REPO, help="source tree B (default: this checkout)")
    p.add_argument("--run-dir", type=Path, default=sl.REPO / "runs" / "serve-ml1m-sasrec")
    p.add_argument("--modes", default="batched,unbatched", help="comma-separated: batched, unbatched")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--requests", type=int, default=500, help="requests per round, tree and mode")
    p.add_argument("--threads", type=int, default=1)
    for side in ("base", "new"):
        p.add_argument(f"--{side}-args", default="", help=f"more `mosaicrec serve` options for {side} (one string)")
        p.add_argument(f"--{side}-env", action="append", default=[], metavar="KEY=VALUE",
                       help=f"an environment variable of the {side} servers (repeatable)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    bodies = sl.histories(args.run_dir, 2000, 200)
    servers: dict[tuple[str, str], sl.Server] = {}
    home = sl.REPO
    try:
        for name, tree in (("base", args.base), ("new", args.new)):
            for mode in modes:
                extra = ["--threads", str(args.threads), "--max-batch", "64",
                         *(["--max-wait-ms", "2"] if mode == "batched" else ["--no-batching"]),
                         *getattr(args, f"{name}_args").split()]  # later options win (argparse)
                env = dict(kv.split("=", 1) for kv in getattr(args, f"{name}_env"))
                sl.REPO = tree.resolve()  # start_server puts REPO/src first on the server's PYTHONPATH
                servers[(name, mode)] = sl.Server(args.run_dir, extra, f"{name}/{mode}", args.threads, env)
        sl.REPO = home
        res: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in servers}
        for srv in servers.values():
            srv.measure(bodies, 4, 100, 60, "raw")  # warm-up
        for r in range(args.rounds):
            order = list(servers.items()) if r % 2 == 0 else list(servers.items())[::-1]
            for key, srv in order:
                m = srv.measure(bodies, 32, args.requests, 60, "raw")
                res[key].append({"rps": round(len(m["latencies"]) / m["seconds"], 1),
                                 "server_cpu_ms": round(1000 * m["server_cpu"] / max(m["issued"], 1), 3),
                                 "client_cpu_ms": round(1000 * m["client_cpu"] / max(m["issued"], 1), 3),
                                 "cores": round((m["server_cpu"] + m["client_cpu"]) / m["seconds"], 2),
                                 "p99_ms": round(1000 * float(np.percentile(m["latencies"], 99)), 1),
                                 "errors": m["issued"] - m["status"].get(200, 0), "other_cores": m["other_cores"]})
            print(r, [round(x, 2) for x in os.getloadavg()], {f"{a}/{b}": v[-1]["rps"] for (a, b), v in res.items()},
                  flush=True)
    finally:
        sl.REPO = home
        for srv in servers.values():
            srv.stop()
    out: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "rounds": args.rounds,
                           "requests": args.requests}
    for (name, mode), rows in res.items():
        out[f"{name}/{mode}"] = {
            **{k: [x[k] for x in rows] for k in ("rps", "server_cpu_ms", "client_cpu_ms", "cores", "p99_ms",
                                                  "other_cores")},
            "errors": sum(int(x["errors"]) for x in rows),
            **{f"mean_{k}": round(sum(x[k] for x in rows) / len(rows), 3)
               for k in ("rps", "server_cpu_ms", "client_cpu_ms", "cores")}}
        print(f"{name}/{mode}", json.dumps(out[f"{name}/{mode}"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
