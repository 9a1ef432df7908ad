"""Generation speed of the augment engines on the same afk ``llm_emf`` prompts.

Engines (each generates, fresh, for the same ``--items`` items taken in popularity order from
position ``--offset`` on, into its own cache ``augment/speed-<engine>.parquet`` of ``--work-dir``):

- ``transformers``: the default local backend (SmolLM2 de-quantised to float32), ``--batch-size``;
- ``llama_cpp``: llama-cpp-python in process, one prompt at a time;
- ``llama_server``: llama.cpp's ``llama-server`` (``--server-bin``) started here with ``-np
  --parallel`` slots and continuous batching, driven by the ``openai`` backend with concurrency =
  ``--parallel``.

The engine settings are ``augment_chunk.llm_config``'s, i.e. those of the cache runs.

Threads: ``$OMP_NUM_THREADS`` (1 in a ``/work/bin/heavy`` slot). For every engine the script
records wall time, completion tokens/s, items/s, the CPU other processes took meanwhile
(``machine_state.Section``) and three example texts:

    /work/bin/heavy python benchmarks/cache/augment_speed.py --engines transformers,llama_cpp,llama_server \\
        --server-bin /tmp/aug5/build/bin/llama-server --json benchmarks/cache/augment_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # machine_state.py
sys.path.insert(0, str(HERE))  # augment_chunk.py

from augment_chunk import llm_config, popularity_order, start_server  # noqa: E402  (sibling script)
from machine_state import Section, snapshot  # noqa: E402

from mosaicrec.config import load_experiment  # noqa: E402
from mosaicrec.data.schema import PreparedData  # noqa: E402
from mosaicrec.features.augment.cache import read_cache  # noqa: E402
from mosaicrec.features.augment.run import AugmentConfig, run_augment  # noqa: E402
from mosaicrec.training.run import resolve_data  # noqa: E402
from mosaicrec.utils import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=str(HERE.parent / "afk_llm_emf.yaml"))
    ap.add_argument("--work-dir", default="work-augspeed")
    ap.add_argument("--engines", default="transformers,llama_cpp,llama_server",
                    help="comma-separated; llama_server:N[:FILE.gguf] = N slots (default --parallel), another GGUF; "
                         "transformers:B[:bfloat16] = batch size B, dtype")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--offset", type=int, default=1000, help="skip this many most popular items")
    ap.add_argument("--batch-size", type=int, default=32, help="transformers batch size")
    ap.add_argument("--server-bin", default="llama-server")
    ap.add_argument("--parallel", type=int, default=8, help="llama-server slots (-np) = HTTP concurrency")
    ap.add_argument("--port", type=int, default=8931)
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    cfg = load_experiment(a.experiment)
    root = resolve_data(cfg.data, Path(a.work_dir))
    data = PreparedData.load(root)
    order = popularity_order(data)[a.offset:]
    results: dict[str, Any] = {"threads": threads, "items": a.items, "offset": a.offset, "before": snapshot(),
                               "engines": {}}
    for spec in a.engines.split(","):
        engine, np_, extra = (spec.split(":") + ["", ""])[:3]  # llama_server:16[:FILE.gguf], transformers:32[:bfloat16]
        if engine == "transformers":
            batch, dtype, parallel, gguf = int(np_ or a.batch_size), extra or "float32", a.parallel, ""
        else:
            batch, dtype, parallel, gguf = a.batch_size, "float32", int(np_ or a.parallel), extra
        gguf_path = gguf or None
        name = "speed-" + spec.replace(":", "-").replace("/", "_")
        (root / "augment" / f"{name}.parquet").unlink(missing_ok=True)
        server = (start_server(a.server_bin, parallel, threads, a.port, gguf_path) if engine == "llama_server"
                  else None)
        try:
            job = AugmentConfig(name=name, items=order, limit=a.items, progress=False,
                                llm=llm_config(engine, threads, batch, parallel, a.port, gguf_path, dtype))
            if engine == "llama_cpp":  # load the model outside the timed section, as the others do
                run_augment(data, job.model_copy(update={"limit": 1, "name": name + "-warm"}))
            with Section(extra_pids={server.pid} if server else None) as sec:
                rep = run_augment(data, job)
        finally:
            if server:
                server.terminate()
                server.wait(30)
        df = read_cache(rep.path)
        res = {"model": rep.model, "generated": rep.n_generated, "failed": len(rep.failed),
               "completion_tokens": rep.completion_tokens, "prompt_tokens": rep.prompt_tokens,
               "seconds": round(sec.wall, 1), "completion_tokens_per_s": round(rep.completion_tokens / sec.wall, 1),
               "items_per_s": round(rep.n_generated / sec.wall, 3),
               "mean_completion_tokens": round(rep.completion_tokens / max(1, rep.n_generated), 1),
               "other_cores": sec.other_cores, "examples": df["text"].head(3).to_list()}
        if engine == "llama_server":
            res["parallel"] = parallel
        if engine == "transformers":
            res["batch_size"], res["dtype"] = batch, dtype
        results["engines"][spec] = res
        print(f"{spec}: {json.dumps({k: v for k, v in res.items() if k != 'examples'})}", flush=True)
        for t in res["examples"]:
            print("   |", t.replace("\n", " / ")[:400], flush=True)
    results["after"] = snapshot()
    if a.json:
        write_json(a.json, results)


if __name__ == "__main__":
    main()
