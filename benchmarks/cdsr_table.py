"""Markdown tables of `mosaicrec bench` result JSONs, per target domain (used for docs/cdsr.md).

    python benchmarks/cdsr_table.py benchmarks/results/afk_haf_vt.json benchmarks/results/afk_c2dsr.json
    python benchmarks/cdsr_table.py --summary benchmarks/results/afk_{c2dsr,haf_vt}.json   # NDCG@10 and MRR per domain
    python benchmarks/cdsr_table.py --summary --plot docs/img/afk.svg benchmarks/results/afk_*.json   # and a bar chart

The full table has one row per benchmark and domain (test, full ranking within the domain, mean ±
sample std over seeds; then the sampled-negative NDCG@10 / MRR, seeds, epochs, seconds per epoch).
``--summary`` has one row per benchmark and one NDCG@10 / MRR column pair per domain; ``--plot`` draws
the same numbers as bars with the seeds' standard deviation as error bars (one panel per metric).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ["mrr", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10"]
SUMMARY_KEYS = ["ndcg@10", "mrr"]


def n_seeds(res: dict) -> int:
    return len(res.get("per_seed", [])) or 1


def mean_std(res: dict, dom: str, key: str) -> tuple[float, float | None]:
    """Mean over seeds and the seeds' std (None for one seed or when the JSON has none)."""
    std = res.get("std", {}).get(dom, {}).get(key) if n_seeds(res) > 1 else None
    return res["metrics"][dom][key], std


def cell(res: dict, dom: str, key: str) -> str:
    mean, std = mean_std(res, dom, key)
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def domains(res: dict) -> list[str]:
    return [k for k in res["metrics"] if k != "overall"]


def load(paths: list[Path]) -> list[dict]:
    """The result JSONs, refused unless they all have the same target domains."""
    results = [json.loads(p.read_text()) for p in paths]
    doms = domains(results[0])
    for p, res in zip(paths, results, strict=True):
        if domains(res) != doms:
            raise SystemExit(f"{p}: domains {domains(res)} differ from {paths[0]}'s {doms}")
    return results


def rows(path: Path) -> list[str]:
    res = json.loads(path.read_text())
    out = []
    seeds = n_seeds(res)
    for dom in domains(res) + ["overall"]:
        samp = (res.get("metrics_sampled") or {}).get(dom, {})
        out.append(f"| {res['name']} | {dom} | " + " | ".join(cell(res, dom, k) for k in KEYS)
                   + f" | {samp.get('ndcg@10', float('nan')):.4f} | {samp.get('mrr', float('nan')):.4f} | "
                   f"{seeds} | {res.get('epochs', 0):.0f} | {res.get('epoch_seconds', 0):.0f} |")
    return out


def full_table(paths: list[Path]) -> list[str]:
    head = "| bench | domain | " + " | ".join(KEYS) + " | sampled ndcg@10 | sampled mrr | seeds | epochs | s/epoch |"
    return [head, "|" + "---|" * (head.count("|") - 1)] + [r for p in paths for r in rows(p)]


def summary_table(results: list[dict]) -> list[str]:
    """One row per result (as returned by ``load``), an NDCG@10 / MRR column pair per domain."""
    doms = domains(results[0])
    cols = [f"{d} {k.upper() if k == 'mrr' else k.replace('ndcg', 'NDCG')}" for d in doms for k in SUMMARY_KEYS]
    out = ["| bench | " + " | ".join(cols) + " | seeds | best epochs |", "|" + "---|" * (len(cols) + 3)]
    for res in results:
        best = ", ".join(str(r.get("best_epoch")) for r in res.get("per_seed", []))
        out.append(f"| {res['name']} | " + " | ".join(cell(res, d, k) for d in doms for k in SUMMARY_KEYS)
                   + f" | {n_seeds(res)} | {best} |")
    return out


def plot(results: list[dict], out: Path, title: str | None = None) -> None:
    """``summary_table``'s numbers as horizontal bars, one panel per metric, seed std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    doms = domains(results[0])
    fig, axes = plt.subplots(1, len(SUMMARY_KEYS), figsize=(5.2 * len(SUMMARY_KEYS), 0.9 + 0.42 * len(results)),
                             squeeze=False)
    y = np.arange(len(results))
    h = 0.8 / len(doms)
    for ax, key in zip(axes[0], SUMMARY_KEYS, strict=True):
        for j, dom in enumerate(doms):
            means, stds = zip(*(mean_std(r, dom, key) for r in results), strict=True)
            stds = [s or 0.0 for s in stds]
            ax.barh(y + (j - (len(doms) - 1) / 2) * h, means, h, xerr=stds, capsize=2, label=dom)
        ax.set_yticks(y, [f"{r['name']} ({n_seeds(r)})" for r in results])
        ax.invert_yaxis()
        ax.set_xlabel(f"test {key} (full ranking within the domain)")
        ax.grid(axis="x", alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper right", ncol=len(doms), fontsize="small")
    fig.suptitle(title or "mean ± std over seeds (seeds in brackets)", fontsize="medium", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mosaicrec"}):
        fig.savefig(out, metadata={"Date": None})
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="bench result JSONs")
    ap.add_argument("--summary", action="store_true", help="NDCG@10 and MRR per domain, one row per benchmark")
    ap.add_argument("--plot", type=Path, default=None, metavar="OUT.svg", help="also draw the summary as a bar chart")
    ap.add_argument("--title", default=None, help="title of the --plot chart")
    a = ap.parse_args()
    if a.summary or a.plot:
        results = load(a.results)
    if a.plot:
        plot(results, a.plot, a.title)
    print("\n".join(summary_table(results) if a.summary else full_table(a.results)))


if __name__ == "__main__":
    main()
