"""benchmarks/cdsr_table.py: the summary table and the bar chart of bench result JSONs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.scripts import load_script


def _mod():
    return load_script("benchmarks/cdsr_table.py")


def _result(path: Path, name: str, food: float, seeds: int, domains=("Food", "Kitchen")) -> Path:
    metrics = {d: {"ndcg@10": food / (i + 1), "mrr": food / (i + 2)} for i, d in enumerate(domains)}
    metrics["overall"] = {"ndcg@10": food, "mrr": food}
    std = {d: {"ndcg@10": 0.001, "mrr": 0.002} for d in metrics}
    per_seed = [{"seed": 2024 + s, "best_epoch": 10 + s} for s in range(seeds)]
    path.write_text(json.dumps({"name": name, "metrics": metrics, "std": std, "per_seed": per_seed}))
    return path


def test_summary_has_ndcg_and_mrr_per_domain_with_std_only_for_several_seeds(tmp_path):
    ct = _mod()
    a = _result(tmp_path / "a.json", "afk_a", 0.04, 3)
    b = _result(tmp_path / "b.json", "afk_b", 0.02, 1)
    lines = ct.summary_table(ct.load([a, b]))
    assert lines[0] == "| bench | Food NDCG@10 | Food MRR | Kitchen NDCG@10 | Kitchen MRR | seeds | best epochs |"
    assert lines[2] == "| afk_a | 0.0400 ± 0.0010 | 0.0200 ± 0.0020 | 0.0200 ± 0.0010 | 0.0133 ± 0.0020 | 3 | 10, 11, 12 |"
    assert lines[3] == "| afk_b | 0.0200 | 0.0100 | 0.0100 | 0.0067 | 1 | 10 |"


def test_summary_refuses_results_with_other_domains(tmp_path):
    ct = _mod()
    a = _result(tmp_path / "a.json", "afk_a", 0.04, 3)
    c = _result(tmp_path / "c.json", "ml_c", 0.04, 3, domains=("Movies",))
    with pytest.raises(SystemExit, match="c.json: domains"):
        ct.load([a, c])


def test_plot_writes_an_svg_naming_every_benchmark(tmp_path):
    ct = _mod()
    paths = [_result(tmp_path / f"{n}.json", f"afk_{n}", 0.01 * (i + 1), 3) for i, n in enumerate("xyz")]
    out = tmp_path / "img" / "chart.svg"
    ct.plot(ct.load(paths), out, "afk test")
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for n in "xyz":
        assert f"afk_{n} (3)" in svg
    assert "afk test" in svg and "Kitchen" in svg
