"""MIRM pre-training: examples of the three tasks, loss goes down, resume equals a straight run,
and the recommender loads the output as its item encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from tests.integration.toydata import random_loo_dataset
from tests.models.molar_tiny import tiny_llama

from mosaicrec.data.schema import PreparedData
from mosaicrec.models.molar.pretrain import PretrainConfig, build_examples, run_pretrain


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirm")
    data_dir = random_loo_dataset(root / "data", n_users=20, n_items=15)
    (data_dir / "augment").mkdir()
    n = 15  # an augment cache as `mosaicrec augment --template molar_text` writes it
    pl.DataFrame({"item_idx": list(range(1, n + 1)), "content_hash": ["h"] * n, "prompt_hash": ["p"] * n,
                  "model": ["m"] * n, "text": [f"a {'red' if i % 2 else 'blue'} thing" for i in range(1, n + 1)],
                  "prompt_tokens": [1] * n, "completion_tokens": [1] * n, "kind": ["text"] * n, "created": ["t"] * n},
                 ).write_parquet(data_dir / "augment" / "molar_text.parquet")
    return root, data_dir, tiny_llama(root / "llama")


def cfg_for(setup, out: str, steps: int, **kw) -> PretrainConfig:
    root, data_dir, llama = setup
    return PretrainConfig(data={"source": "prepared", "path": str(data_dir)}, out=str(root / out),
                          backbone={"model": str(llama)}, steps=steps, batch_size=4, lr=kw.pop("lr", 2e-2), save_every=5,
                          bf16=False, describe={"n": 12, "source": "molar_text"}, next_item={"n": 12, "history": 3},
                          **kw)


def test_examples_of_each_task(setup):
    _, data_dir, _ = setup
    cfg = cfg_for(setup, "x", 1)
    data = PreparedData.load(data_dir)
    ex, counts = build_examples(cfg, data, is_vlm=False, image_token=None)
    assert counts == {"describe": 12, "image": 0, "next_item": 12}  # no images: no image task
    nxt = [e for e in ex if e["prompt"].startswith("User history:")]
    assert all(e["target"].startswith(" item ") for e in nxt)
    assert all(1 <= e["prompt"].count(";") + 1 <= 3 for e in nxt)  # at most `history` titles
    desc = [e for e in ex if e["prompt"].startswith("Item information:")]
    assert all(e["target"] in (" a red thing", " a blue thing") for e in desc)


def test_pretrain_learns_resumes_exactly_and_feeds_the_recommender(setup):
    root = setup[0]
    learned = run_pretrain(cfg_for(setup, "full", 20, mode="full", lr=3e-3), root / "work", progress=False)
    assert learned["loss_last_10"] < 0.7 * learned["loss_first"]
    full = run_pretrain(cfg_for(setup, "straight", 20), root / "work", progress=False)  # LoRA, merged at the end
    # the same job interrupted after 10 steps and continued gives the same weights
    run_pretrain(cfg_for(setup, "resumed", 10), root / "work", progress=False)
    again = run_pretrain(cfg_for(setup, "resumed", 20), root / "work", progress=False)
    assert again["steps"] == 20
    from safetensors.torch import load_file

    a = load_file(str(root / "straight" / "model" / "model.safetensors"))
    b = load_file(str(root / "resumed" / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    with pytest.raises(Exception, match="different MIRM config"):
        run_pretrain(cfg_for(setup, "resumed", 25, lr=1e-3), root / "work", progress=False)
    # the recommender's item encoder loads the MIRM output
    from mosaicrec.models.molar.model import Molar

    ctx = Molar.example_context(n_items=10, max_len=6)
    model = Molar(Molar.example_config(backbone={"model": str(setup[2])},
                                       item_encoder={"pretrained": full["model"], "cache": False}), ctx)
    model.ensure_item_table()
    assert np.isfinite(model.item_table.numpy()).all() and Path(full["model"]).is_dir()
