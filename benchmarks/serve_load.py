"""Load test of `mosaicrec serve`: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients.

A bounded async client (raw asyncio keep-alive HTTP/1.1 by default; aiohttp or httpx with
``--client``) on loopback sends a fixed number of /recommend requests (real
user histories of the run's dataset, most recent ``--history`` items, target domain = the
user's last one, k=10) at each concurrency level, with a time limit per level; then the same
at 32 clients against a second server started with ``--no-batching`` (one forward pass per
request), in ``--rounds`` alternating rounds so that both modes see the same machine (which
mode runs first alternates from round to round). Every
request is counted: answered 200, answered otherwise (errors, with 5xx counted apart), or lost
(never answered before the time limit).

Batching ratio at 32 clients: each round's own ratio (``rounds_c32``, with the cores that other
processes took during each half, see benchmarks/machine_state.py), their median and quartiles
(``batching_speedup_c32_median`` / ``_spread``) and the pooled ratio (``batching_speedup_c32``:
all batched requests / time over the same for unbatched). The >= 3x target is decided on the
median (stated before the final run).

    python benchmarks/serve_load.py --run-dir runs/serve-ml1m-sasrec --train-if-missing \\
        --json benchmarks/results/serve_load.json

``--train-if-missing`` trains the SASRec run on MovieLens-1M first (few epochs: accuracy does
not matter for a load test; see TRAIN_CONFIG) with the training engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_state import Section, ratio_stats, snapshot  # noqa: E402  (sibling module of this script)

SHARED = Path(os.environ.get("MOSAICREC_SHARED", REPO.parent / "shared")) / "data"

JSON_HEADERS = {"content-type": "application/json"}
TRAIN_CONFIG: dict[str, Any] = {
    "name": "serve-ml1m-sasrec",
    "data": {"source": "movielens", "path": str(SHARED / "ml-1m"), "name": "ml1m", "split": "loo"},
    "model": {"name": "sasrec", "hidden": 64, "layers": 2, "heads": 1, "dropout": 0.2, "loss": "ce"},
    "train": {"epochs": 1, "batch_size": 256, "lr": 1e-3, "max_len": 200, "val_users": 500,
              "accelerator": "cpu", "patience": 3},
}


def train_run(run_dir: Path, work_dir: Path) -> None:
    from mosaicrec.config import ExperimentConfig
    from mosaicrec.training.engine import train_experiment

    t0 = time.perf_counter()
    res = train_experiment(ExperimentConfig(**TRAIN_CONFIG), run_dir, work_dir, progress=False)
    print(f"trained {run_dir} in {time.perf_counter() - t0:.0f}s: valid {res.valid}", file=sys.stderr)


def histories(run_dir: Path, n: int, length: int, seed: int = 0) -> list[dict[str, Any]]:
    """Request bodies from real users: their most recent ``length`` items (raw ids)."""
    from mosaicrec.data.schema import PreparedData
    from mosaicrec.utils import read_json

    data = PreparedData.load(read_json(run_dir / "data.json")["path"])
    raw = [str(x) for x in data.items["raw_id"].to_list()]
    rng = np.random.default_rng(seed)
    users = rng.integers(0, data.n_users, n)
    out = []
    for u in users.tolist():
        rows = slice(int(data.indptr[u]), int(data.indptr[u + 1]))
        items = data.item[rows][-length:]
        out.append({"history": [raw[i - 1] for i in items.tolist()], "k": 10,
                    "domain": data.domains[int(data.domain[rows][-1])]})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(run_dir: Path, port: int, extra: list[str], log: Path, threads: int | None = None,
                 env_extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``mosaicrec serve`` in a subprocess (its output goes to ``log``), once /health answers.
    ``threads``: OMP/MKL threads of the server process (all its libraries, not only torch);
    ``env_extra``: more environment variables for the server (A/B runs of settings)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           **(env_extra or {})}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "mosaicrec", "serve", str(run_dir), "--port", str(port), *extra]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    from mosaicrec.utils import wait_healthy

    wait_healthy(proc, f"http://127.0.0.1:{port}/health", 300, " ".join(cmd), detail=lambda: log.read_text()[-2000:])
    return proc


async def _post_httpx(url: str, concurrency: int) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(base_url=url, limits=limits)

    async def post(body: bytes, timeout: float) -> tuple[int, str]:
        r = await client.post("/recommend", content=body, headers=JSON_HEADERS, timeout=timeout)
        return r.status_code, r.text

    return client, post, (httpx.HTTPError,)


async def _post_aiohttp(url: str, concurrency: int) -> Any:
    import aiohttp

    session = aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=concurrency))

    async def post(body: bytes, timeout: float) -> tuple[int, str]:
        async with session.post("/recommend", data=body, headers=JSON_HEADERS,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.text()

    return session, post, (aiohttp.ClientError, asyncio.TimeoutError)


class _RawConnections:
    """Keep-alive HTTP/1.1 connections on raw asyncio streams, one per concurrent worker.

    The leanest client: a request is one prepared byte string written to the socket and the
    answer is read by its Content-Length (uvicorn always sends one for these JSON answers). The
    client shares the machine's 2 cores with the server, so its CPU per request matters; see
    docs/serving.md for the measured cost of each client.
    """

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.head = (f"POST /recommend HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
                     "content-type: application/json\r\ncontent-length: ").encode()

    async def post(self, body: bytes, timeout: float) -> tuple[int, str]:
        conn = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        try:
            status, text, keep = await asyncio.wait_for(self._exchange(*conn, body), timeout)
        except BaseException:
            conn[1].close()
            raise
        if keep:
            self.idle.append(conn)
        else:
            conn[1].close()
        return status, text

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        body: bytes) -> tuple[int, str, bool]:
        writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        if "content-length" not in headers:
            raise ConnectionError(f"answer without content-length: {lines[0]!r}")
        data = await reader.readexactly(int(headers["content-length"]))
        return status, data.decode(), headers.get("connection", "").lower() != "close"

    async def aclose(self) -> None:
        for _, w in self.idle:
            w.close()


async def _post_raw(url: str, concurrency: int) -> Any:
    conns = _RawConnections(url)
    return conns, conns.post, (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                               asyncio.LimitOverrunError, ValueError)


CLIENTS = {"raw": _post_raw, "aiohttp": _post_aiohttp, "httpx": _post_httpx}


async def load(url: str, bodies: list[dict[str, Any]], concurrency: int, n_requests: int,
               time_limit: float, client_kind: str = "aiohttp") -> dict[str, Any]:
    """``n_requests`` POST /recommend from ``concurrency`` workers; stop issuing after ``time_limit``."""
    payloads = [json.dumps(b).encode() for b in bodies]  # encoded once: the client measures the server
    latencies: list[float] = []
    status: dict[int, int] = {}
    failures: list[str] = []
    issued = 0
    t_start = time.perf_counter()
    deadline = t_start + time_limit
    client, post, transport_errors = await CLIENTS[client_kind](url, concurrency)

    async def worker() -> None:
        nonlocal issued
        while issued < n_requests and time.perf_counter() < deadline:
            body = payloads[issued % len(payloads)]
            issued += 1
            t0 = time.perf_counter()
            try:
                code, text = await post(body, max(1.0, deadline - t0 + 5))
                status[code] = status.get(code, 0) + 1
                if code == 200:
                    latencies.append(time.perf_counter() - t0)
                elif len(failures) < 5:
                    failures.append(f"{code}: {text[:200]}")
            except transport_errors as e:
                status[-1] = status.get(-1, 0) + 1
                if len(failures) < 5:
                    failures.append(repr(e))

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close() if client_kind == "aiohttp" else await client.aclose()
    return {"latencies": latencies, "status": status, "failures": failures, "issued": issued,
            "seconds": time.perf_counter() - t_start, "concurrency": concurrency}


def summarize(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge rounds of :func:`load` (plus their CPU and batch counters) into the reported numbers."""
    status: dict[int, int] = {}
    for r in raws:
        for k, v in r["status"].items():
            status[k] = status.get(k, 0) + v
    lat = np.asarray([x for r in raws for x in r["latencies"]]) * 1000.0
    seconds = sum(r["seconds"] for r in raws)
    issued = sum(r["issued"] for r in raws)
    ok, answered = status.get(200, 0), sum(status.values())
    batches = sum(r["batches"] for r in raws)
    return {
        "rps": round(ok / seconds, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2) if ok else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if ok else None,
        "errors": answered - ok, "errors_5xx": sum(v for k, v in status.items() if k >= 500),
        "transport_errors": status.get(-1, 0), "lost": issued - answered,
        "requests": issued, "ok": ok, "seconds": round(seconds, 2), "rounds": len(raws),
        "concurrency": raws[0]["concurrency"],
        "mean_batch": round(sum(r["batched_requests"] for r in raws) / batches, 2) if batches else None,
        "server_cpu_ms_per_request": round(1000 * sum(r["server_cpu"] for r in raws) / max(issued, 1), 3),
        "client_cpu_ms_per_request": round(1000 * sum(r["client_cpu"] for r in raws) / max(issued, 1), 3),
        "status_counts": {str(k): v for k, v in sorted(status.items())},
        "failures": [f for r in raws for f in r["failures"]][:5],
        "other_cores": (round(sum(r["other_cpu"] for r in raws) / sum(r["section_wall"] for r in raws), 2)
                        if all(r.get("other_cpu") is not None for r in raws) else None),
    }


def batch_stats(url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{url}/info", timeout=10).json()["batch_stats"]


class Server:
    """A ``mosaicrec serve`` subprocess on a free loopback port."""

    def __init__(self, run_dir: Path, extra: list[str], label: str, threads: int | None = None,
                 env_extra: dict[str, str] | None = None) -> None:
        import psutil

        self.label, self.port = label, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.gettempdir()) / f"serve_load-{self.port}.log"
        self.proc = start_server(run_dir, self.port, extra, self.log, threads, env_extra)
        self.ps = psutil.Process(self.proc.pid)

    def measure(self, bodies: list[dict[str, Any]], c: int, n: int, limit: float, client: str) -> dict[str, Any]:
        before = batch_stats(self.url)
        cpu0, own0 = sum(self.ps.cpu_times()[:2]), time.process_time()
        with Section() as section:  # + the CPU that processes outside this benchmark took meanwhile
            raw = asyncio.run(load(self.url, bodies, c, n, limit, client))
        cpu1, own1 = sum(self.ps.cpu_times()[:2]), time.process_time()
        after = batch_stats(self.url)
        raw.update(server_cpu=cpu1 - cpu0, client_cpu=own1 - own0, batches=after["batches"] - before["batches"],
                   batched_requests=after["requests"] - before["requests"], other_cores=section.other_cores,
                   other_cpu=section.other_cpu if section.measured else None, section_wall=section.wall)
        return raw

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        tail = self.log.read_text()[-1500:]
        if "Traceback" in tail or "ERROR" in tail:
            print(f"server log {self.log}:\n{tail}", file=sys.stderr)


def report(label: str, res: dict[str, Any]) -> None:
    print(f"{label}: {res['rps']} rps, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, errors {res['errors']}, "
          f"lost {res['lost']}, mean batch {res['mean_batch']}, cpu ms/request server "
          f"{res['server_cpu_ms_per_request']} client {res['client_cpu_ms_per_request']}", file=sys.stderr)


def run_all(args: argparse.Namespace, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Levels on the batched server; then batched vs unbatched at 32 clients in alternating rounds,
    so that both see the same machine (the load of a shared machine drifts within minutes)."""
    common = ["--threads", str(args.threads), "--max-batch", str(args.max_batch),
              *(["--switch-interval-ms", str(args.switch_interval_ms)] if args.switch_interval_ms else [])]
    policy = ["--batch-policy", args.batch_policy] if args.batch_policy else []
    batched = Server(args.run_dir, [*common, "--max-wait-ms", str(args.max_wait_ms), *policy], "batched", args.threads)
    unbatched = Server(args.run_dir, [*common, "--no-batching"], "unbatched", args.threads)
    results: dict[str, Any] = {}
    try:
        import httpx

        results["servers"] = {srv.label: httpx.get(f"{srv.url}/info", timeout=10).json()["batching"]
                              for srv in (batched, unbatched)}
        for srv in (batched, unbatched):
            srv.measure(bodies, 4, args.warmup, args.time_limit, args.client)  # warm-up, not counted
        for c in args.levels:
            if c != 32:
                results[f"c{c}"] = summarize([batched.measure(bodies, c, args.requests, args.time_limit, args.client)])
                report(f"batched c={c}", results[f"c{c}"])
        rounds: dict[str, list[dict[str, Any]]] = {"c32": [], "unbatched_c32": []}
        n, limit = args.round_requests, args.time_limit
        servers = {"c32": batched, "unbatched_c32": unbatched}
        for i in range(args.rounds):  # the order alternates: the second of a pair ran measurably slower
            for key in (("c32", "unbatched_c32") if i % 2 == 0 else ("unbatched_c32", "c32")):
                rounds[key].append(servers[key].measure(bodies, 32, n, limit, args.client))
        for key, raws in rounds.items():
            results[key] = summarize(raws)
            report(key, results[key])
        detail = []
        for b, u in zip(rounds["c32"], rounds["unbatched_c32"], strict=True):
            b_rps, u_rps = (summarize([r])["rps"] for r in (b, u))
            detail.append({"first": "batched" if len(detail) % 2 == 0 else "unbatched",
                           "rps": b_rps, "unbatched_rps": u_rps, "ratio": round(b_rps / max(u_rps, 1e-9), 3),
                           "other_cores": b["other_cores"], "unbatched_other_cores": u["other_cores"]})
        results["rounds_c32"] = detail
    finally:
        batched.stop()
        unbatched.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=REPO / "runs" / "serve-ml1m-sasrec")
    p.add_argument("--work-dir", type=Path, default=REPO / "work")
    p.add_argument("--train-if-missing", action="store_true")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--requests", type=int, default=3000, help="requests per level other than 32")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per level (at 32: per round and mode)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--rounds", type=int, default=6, help="alternating batched/unbatched rounds at 32 clients")
    p.add_argument("--round-requests", type=int, default=1000,
                   help="requests per round and mode at 32 clients (time limit per round: --time-limit)")
    p.add_argument("--history", type=int, default=200, help="items per request history")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--batch-policy", choices=["fill", "recent", "pipeline"], default=None,
                   help="the batched server's --batch-policy (default: the server's default)")
    p.add_argument("--switch-interval-ms", type=float, default=None,
                   help="both servers' --switch-interval-ms (default: Python's 5 ms)")
    p.add_argument("--client", choices=sorted(CLIENTS), default="raw",
                   help="HTTP client: raw asyncio keep-alive HTTP/1.1 (leanest), aiohttp or httpx "
                        "(client CPU per request is reported; see docs/serving.md)")
    args = p.parse_args(argv)

    if not (args.run_dir / "model.safetensors").exists():
        if not args.train_if_missing:
            p.error(f"{args.run_dir}: no trained run (pass --train-if-missing to train one)")
        train_run(args.run_dir, args.work_dir)
    bodies = histories(args.run_dir, 2000, args.history)
    state0 = snapshot()
    results = run_all(args, bodies)
    c32, un = results["c32"], results["unbatched_c32"]
    if c32:
        results["batching_speedup_c32"] = round(c32["rps"] / max(un["rps"], 1e-9), 2)  # pooled over rounds
        spread = ratio_stats([r["ratio"] for r in results["rounds_c32"]])
        results["batching_speedup_c32_median"] = round(spread["median"], 2)
        results["batching_speedup_c32_spread"] = spread
        results["server_cpu_ratio_c32"] = round(un["server_cpu_ms_per_request"]
                                                / max(c32["server_cpu_ms_per_request"], 1e-9), 2)
        results["target_statistic"] = {"speedup>=3x": "median of the per-round ratios at 32 clients "
                                                      "(batching_speedup_c32_median); pooled beside it"}
        results["targets"] = {
            "rps_c32>=300": c32["rps"] >= 300, "p99_c32<100ms": (c32["p99_ms"] or 1e9) < 100,
            "speedup>=3x": results["batching_speedup_c32_median"] >= 3,
            "no_5xx_no_lost": all(r["errors_5xx"] == 0 and r["lost"] == 0 and r["transport_errors"] == 0
                                  for k, r in results.items() if isinstance(r, dict) and "rps" in r)}
    info = json.loads((args.run_dir / "model.json").read_text())
    results["setup"] = {
        "run_dir": str(args.run_dir), "model": info.get("model"), "model_config": info.get("config"),
        "max_len": info.get("max_len"), "history_items": args.history, "k": 10,
        "requests_per_level": args.requests, "requests_per_round_c32": args.round_requests,
        "time_limit_s": args.time_limit, "server_torch_threads": args.threads,
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "client": args.client,
        "batch_policy": args.batch_policy or "server default (see servers)",
        "switch_interval_ms": args.switch_interval_ms,
        "rounds_c32": args.rounds, "cpus": os.cpu_count(), "load_avg_at_start": state0["load_avg"],
        "runnable_other_processes_at_start": state0["runnable_other_processes"],
        "load_avg_at_end": snapshot()["load_avg"],
        "runnable_other_processes_at_end": snapshot()["runnable_other_processes"],
        "command": " ".join(["python", *sys.argv]), "python": platform.python_version(),
        "machine": platform.machine(), "note": "client and server share the machine (loopback)"}
    print(json.dumps({k: v for k, v in results.items() if k != "setup"}, indent=1), file=sys.stderr)
    if args.json:
        sys.path.insert(0, str(REPO / "src"))
        from mosaicrec.utils import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
