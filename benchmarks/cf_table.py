"""Markdown tables of the CF benchmarks (issue 6) for docs/lirdrec.md, from the results JSONs.

    python benchmarks/cf_table.py ml1m [scientific ...]

One table per dataset: every ``benchmarks/results/<dataset>_<model>.json`` of the CF models
(bprmf, lightgcn, vbpr, freedom, lirdrec and its variants), mean ± sample std over the seeds,
epochs run (best, 0-based) per seed, seconds per training epoch in its own run; then the
cold-item table from the ``metrics_cold`` entries.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("bprmf", "lightgcn", "vbpr", "freedom", "lirdrec", "lirdrec-no_dct", "lirdrec-no_pwc",
          "lirdrec-with_ids", "lirdrec-aug")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@10", "precision@20", "map@10", "map@20")
COLD = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def cell(mean: float, std: float | None, n: int) -> str:
    return f"{mean:.4f} ± {std:.4f}" if n > 1 and std is not None else f"{mean:.4f}"


def tables(dataset: str) -> list[str]:
    head = ["model", "seeds", *[m.replace("precision", "Precision").replace("recall", "Recall")
                                .replace("ndcg", "NDCG").replace("map", "MAP") for m in METRICS],
            "epochs run (best)", "s/epoch in its run"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cold_rows = []
    for model in MODELS:
        path = HERE / "results" / f"{dataset}_{model}.json"
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        n = len(res.get("seeds", []))
        m, s = res["metrics"]["overall"], res.get("std", {}).get("overall", {})
        runs = ", ".join(f"{r['epochs']} ({r['best_epoch']})" for r in res.get("per_seed", []))
        out.append(f"| {model} | {n} | " + " | ".join(cell(m[k], s.get(k), n) for k in METRICS)
                   + f" | {runs} | {res['epoch_seconds']:.1f} |")
        cold = res.get("metrics_cold")
        if cold:
            cold_rows.append((model, cold))
    if cold_rows:
        out += ["", "| ranking of cold items (test) | seeds | " + " | ".join(COLD) + " |", "|---|---|" + "---|" * len(COLD)]
        for model, cold in cold_rows:
            k = cold.get("n_seeds", 1)
            out.append(f"| {model} (trained on {cold.get('bench', 'the cold split')}) | {k} | "
                       + " | ".join(cell(cold['model'][c], cold.get('model_std', {}).get(c), k) for c in COLD) + " |")
        cold = cold_rows[0][1]
        for who in ("popularity", "content_knn"):
            if who in cold:
                out.append(f"| {who} | - | " + " | ".join(f"{cold[who][c]:.4f}" for c in COLD) + " |")
        out.append(f"\n{cold['n_queries']} test queries (users with a cold test item), {cold['n_targets']} targets, "
                   f"{cold['n_cold_items']} cold candidates.")
    return out


def main(argv: list[str]) -> int:
    for dataset in argv or ["scientific", "ml1m"]:
        print(f"### {dataset}\n")
        print("\n".join(tables(dataset)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
