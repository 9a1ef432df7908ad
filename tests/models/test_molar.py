"""Molar specifics: the [ITEM] token's state is the item embedding, images reach a VLM backbone,
the symmetric InfoNCE (hand-computed), alignment gradients, LoRA modes, the disk cache, the history cap.

Shapes, causality, a few optimiser steps lowering the loss and the safetensors round trip run for
Molar in tests/models/test_models.py (parametrised over the registry, via ``example_config``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.models.molar_tiny import tiny_llama, tiny_llava
from tests.models.toys import toy_train_batch

from mosaicrec.models.molar import align as A
from mosaicrec.models.molar import items as I
from mosaicrec.models.molar.backbone import load_backbone
from mosaicrec.models.molar.config import BackboneConfig, ItemEncoderConfig
from mosaicrec.models.molar.model import Molar, normaliser


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("llama") / "tiny-llama")


def make(**overrides) -> Molar:
    torch.manual_seed(0)
    ctx = Molar.example_context(n_items=30, max_len=8)
    return Molar(Molar.example_config(**overrides), ctx)


# ---- item encoder ---------------------------------------------------------------------------------
def test_item_embedding_is_the_final_state_at_the_item_token(llama_dir):
    bb = load_backbone(BackboneConfig(model=str(llama_dir)))
    cfg = ItemEncoderConfig(prompt="Item: {text}")
    content = I.ItemContent(["", "red pan", "a much longer blue kettle text"])
    enc = I.item_inputs(bb, cfg, content, [1, 2])
    assert bb.tokenizer.convert_ids_to_tokens(bb.item_token_id) == "[ITEM]"
    pos = I.item_token_positions(enc["input_ids"], bb.item_token_id)
    assert enc["input_ids"][0, pos[0]] == bb.item_token_id and pos.tolist() == [enc["input_ids"].shape[1] - 1] * 2
    got = I.encode(bb, enc, bf16=False)  # [2, H]
    # by hand: each prompt alone (no padding), the decoder's final (normed) state at its last token
    for row, text in enumerate(["red pan", "a much longer blue kettle text"]):
        ids = bb.tokenizer(f"Item: {text}[ITEM]", return_tensors="pt")["input_ids"]
        assert ids[0, -1] == bb.item_token_id  # the special token is one token
        with torch.no_grad():
            h = bb.lm(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]  # [T, H]
        torch.testing.assert_close(got[row], h[-1], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(got[row], h[-2], atol=1e-3)  # not the state before the token


def test_item_prompt_without_item_token_is_an_error():
    with pytest.raises(ValueError, match="item token"):
        I.item_token_positions(torch.tensor([[5, 6, 7]]), 9)


def test_vision_language_backbone_reads_the_image(tmp_path):
    from PIL import Image

    folder = tiny_llava(tmp_path / "tiny-llava")
    bb = load_backbone(BackboneConfig(model=str(folder)), layers=1)
    assert bb.is_vlm and len(bb.decoder.layers) == 1
    rng = np.random.default_rng(0)
    paths = []
    for k in range(2):
        p = tmp_path / f"img{k}.png"
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(p)
        paths.append(str(p))
    content = I.ItemContent(["", "red pan", "red pan", "red pan"], [None, paths[0], paths[1], None])
    cfg = ItemEncoderConfig()
    enc = I.item_inputs(bb, cfg, content, [1, 2, 3])
    assert enc["pixel_values"].shape[0] == 2  # items 1 and 2 have images; item 3 is text only
    e = I.encode(bb, enc, bf16=False)  # [3, H]
    assert e.shape == (3, bb.hidden) and torch.isfinite(e).all()
    assert not torch.allclose(e[0], e[1], atol=1e-4)  # same text, different image -> different embedding
    assert not torch.allclose(e[0], e[2], atol=1e-4)  # with and without the image


# ---- alignment -----------------------------------------------------------------------------------
def test_info_nce_hand_computed_and_symmetric():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # cosines: cos(a0,b0)=1, cos(a0,b1)=1/sqrt2, cos(a1,b0)=0, cos(a1,b1)=1/sqrt2; tau = 0.5
    s = 1 / math.sqrt(2)
    row = lambda pos, other: -math.log(math.exp(pos / 0.5) / (math.exp(pos / 0.5) + math.exp(other / 0.5)))  # noqa: E731
    a_to_b = (row(1, s) + row(s, 0)) / 2  # rows of sim: a0 vs (b0*, b1), a1 vs (b0, b1*)
    b_to_a = (row(1, 0) + row(s, s)) / 2  # columns: b0 vs (a0*, a1), b1 vs (a0, a1*)
    expected = 0.5 * (a_to_b + b_to_a)
    assert float(A.info_nce(a, b, 0.5)) == pytest.approx(expected, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    torch.testing.assert_close(A.info_nce(x, y, 0.1), A.info_nce(y, x, 0.1))
    assert float(A.info_nce(x, x, 0.1)) < float(A.info_nce(x, y, 0.1))  # aligned pairs cost less


def _sasrec_teacher(ctx):
    from mosaicrec.models.sasrec import SASRec, SASRecConfig

    torch.manual_seed(1)
    return SASRec(SASRecConfig(hidden=16, layers=1, dropout=0.0), ctx).eval()


def test_alignment_gradient_reaches_the_content_encoder_not_the_id_model(monkeypatch):
    monkeypatch.setattr(A, "load_teacher", lambda cfg, ctx: _sasrec_teacher(ctx))
    model = make(align={"alpha": 0.5, "id_run": "unused-by-the-stub"})
    teacher = model._teacher[0]
    assert not any(k.startswith("_teacher") for k in model.state_dict())  # the ID model is not saved
    batch = toy_train_batch(model.ctx)
    model.train()
    states = model.sequence_states(batch)
    loss = model.align_loss(batch, states)
    loss.backward()
    assert float(loss.detach()) > 0
    for name in ("user_lm.layers.0.self_attn.q_proj.weight", "in_proj.weight", "item_proj.weight", "align_proj.weight"):
        g = dict(model.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name
    assert all(p.grad is None for p in teacher.parameters())
    # the total loss is rec + alpha * align (same negatives: same seed)
    torch.manual_seed(3)
    total = model.loss(batch)
    proj, model.align_proj = model.align_proj, None
    torch.manual_seed(3)
    rec = model.loss(batch)
    model.align_proj = proj
    al = model.align_loss(batch, model.sequence_states(batch))
    torch.testing.assert_close(total, rec + 0.5 * al)


def test_alignment_without_an_id_model_is_a_clear_error():
    with pytest.raises(ValueError, match="align.id_run"):
        make(align={"alpha": 0.1})


# ---- training modes ------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    {"loss": "bce"},
    {"user_encoder": {"mode": "lora", "user_token": "interleave"}},
    {"item_encoder": {"mode": "full", "cache": False, "prompt": "{text}"}, "user_encoder": {"mode": "lora"},
     "grad_checkpointing": True},
])
def test_variants_learn(overrides):
    model = make(**overrides)
    batch = toy_train_batch(model.ctx)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def fixed() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(model.loss(batch))

    model.train()
    start = fixed()
    for step in range(40):
        torch.manual_seed(step)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert fixed() < 0.85 * start


def test_lora_modes_train_only_adapters_and_reencode_batch_items():
    model = make(item_encoder={"mode": "lora", "cache": False}, user_encoder={"mode": "lora"})
    assert model.item_lm is not None
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("item_lm" in n and "lora_" in n for n in trainable)
    assert not any(("item_lm" in n or "user_lm" in n) and "lora_" not in n for n in trainable)
    model.train()
    model.loss(toy_train_batch(model.ctx)).backward()
    g = [p.grad for n, p in model.named_parameters() if "item_lm" in n and "lora_B" in n]
    assert g and all(x is not None for x in g)  # gradients flow into the item encoder


def test_frozen_item_table_is_cached_on_disk_by_content(llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAICREC_CACHE", str(tmp_path / "cache"))
    ctx = Molar.example_context(n_items=12, max_len=6)
    cfg = Molar.example_config(backbone={"model": str(llama_dir)}, item_encoder={"cache": True})
    first = Molar(cfg, ctx)
    path = Path(first.ensure_item_table())
    assert path.exists() and path.parent == tmp_path / "cache" / "molar"
    monkeypatch.setattr(I, "encode_all", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    second = Molar(cfg, Molar.example_context(n_items=12, max_len=6))
    assert second.ensure_item_table() == str(path)
    torch.testing.assert_close(second.item_table, first.item_table)
    # different item text -> different key (and here: encoding is attempted)
    ctx3 = Molar.example_context(n_items=12, max_len=6)
    ctx3.extra["item_content"].texts[3] = "something else"
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        Molar(cfg, ctx3).ensure_item_table()


def test_normaliser_whitens_or_standardises():
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # unbiased std [sqrt(2), 2 sqrt(2)]
    w = normaliser(x, "standardise", 0.0)
    torch.testing.assert_close(w, torch.diag(torch.tensor([1 / math.sqrt(2), 1 / (2 * math.sqrt(2))])),
                               atol=1e-5, rtol=1e-5)
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[3.0, 0.0, 0.0], [2.9, 0.1, 0.0], [0.0, 1.0, 0.5]])  # strongly correlated columns
    y = torch.randn(500, 3, generator=g) @ mix  # [500, 3]
    z = (y - y.mean(0)) @ normaliser(y, "whiten", 0.0)  # [500, 3]
    torch.testing.assert_close(z.T @ z / 499, torch.eye(3), atol=1e-4, rtol=1e-4)
    # rank-deficient table (fewer items than dimensions) stays finite
    assert torch.isfinite(normaliser(torch.randn(4, 8, generator=g), "whiten", 1e-4)).all()


def test_frozen_items_reach_the_adapter_whitened():
    torch.manual_seed(0)
    ctx = Molar.example_context(n_items=80, max_len=8)  # more items than the 32 hidden dimensions
    model = Molar(Molar.example_config(), ctx)
    z = model._raw_items(torch.arange(1, 81))  # [80, 32]
    torch.testing.assert_close(z.mean(0), torch.zeros(32), atol=2e-3, rtol=0)
    # the random tiny LM's states span ~14 directions; those are whitened (eigenvalue 1), the
    # near-null rest is damped by the eigenvalue floor (never amplified above 1)
    lam = torch.linalg.eigvalsh(z.T @ z / 79)  # [32]
    assert lam.max() < 1.01 and int(((lam - 1).abs() < 0.01).sum()) >= 10
    std = Molar(Molar.example_config(item_encoder={"cache": False, "normalise": "standardise"}), ctx)
    zs = std._raw_items(torch.arange(1, 81))  # [80, 32]
    torch.testing.assert_close(zs.std(0), torch.ones(32), atol=1e-4, rtol=0)
    assert torch.linalg.eigvalsh(zs.T @ zs / 79).max() > 5  # standardised but correlated: not white


def test_backbone_layers_are_cut():
    model = make(user_encoder={"layers": 1})
    assert len(model.user_lm.layers) == 1 and model.user_lm.config.num_hidden_layers == 1


# ---- history cap -----------------------------------------------------------------------------------
def test_cap_windows_keeps_each_users_most_recent_windows():
    from mosaicrec.training.data import Windows

    users = torch.tensor([0, 0, 0, 1, 2, 2])  # windows are cut from the end: first = most recent
    w = Windows(items=torch.arange(6)[:, None], domains=torch.zeros(6, 1), lengths=torch.ones(6),
                users=users, targets=torch.ones(6, 1), target_domains=torch.zeros(6, 1))
    assert A.cap_windows(w, 1).items.squeeze(1).tolist() == [0, 3, 4]
    assert A.cap_windows(w, 2).items.squeeze(1).tolist() == [0, 1, 3, 4, 5]
    assert A.cap_windows(w, None) is w


def test_param_groups_give_new_layers_their_own_learning_rate():
    from mosaicrec.config import TrainConfig
    from mosaicrec.training.module import RecModule

    model = make(head_lr=5e-3)
    opt = RecModule(model, TrainConfig(lr=1e-4), None).configure_optimizers()
    back, head = opt.param_groups
    assert back["lr"] == 1e-4 and head["lr"] == 5e-3
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("user_lm.") for p in back["params"])
    assert {"user_token", "in_proj.weight", "item_proj.weight", "logit_scale"} <= {names[id(p)] for p in head["params"]}
    assert len(back["params"]) + len(head["params"]) == sum(p.requires_grad for p in model.parameters())


# ---- training-free diagnostics of the item table ------------------------------------------------------
def test_last_item_knn_hand_computed():
    from mosaicrec.data.schema import TEST, TRAIN, VALID
    from mosaicrec.models.molar.diagnose import last_item_knn

    table = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])  # row 0 = padding
    # user 0: 1 2 | 3 (last 2, target 3: nearest to 2 -> rank 0); user 1: 3 | 1 (nearest to 3 is 2 -> rank 1);
    # user 2: no test row; user 3: test at its first position (no history): both skipped
    item = np.array([1, 2, 3, 3, 1, 2, 1], dtype=np.int32)
    split = np.array([TRAIN, VALID, TEST, TRAIN, TEST, TRAIN, TEST], dtype=np.int8)
    indptr = np.array([0, 3, 5, 6, 7])
    nd, hr, n = last_item_knn(indptr, item, split, table[1:], k=10)
    assert n == 2 and hr == 1.0 and nd == pytest.approx((1.0 + 1.0 / math.log2(3)) / 2)
    assert last_item_knn(indptr, item, split, table[1:], k=1)[:2] == (0.5, 0.5)


def test_diagnose_normalisations():
    from mosaicrec.models.molar.diagnose import normalised, top_variance_share

    rng = np.random.default_rng(0)
    table = np.vstack([np.zeros((1, 3)), rng.normal(size=(400, 3)) @ np.array([[3.0, 0, 0], [2.9, 0.1, 0], [0, 1, 0.5]])])
    w = normalised(table, "whiten", eps=0.0)  # [400, 3]
    np.testing.assert_allclose(w.T @ w / 399, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(normalised(table, "standardise").std(0, ddof=1), np.ones(3), atol=1e-5)
    assert top_variance_share(w, k=1) == pytest.approx(1 / 3)
    assert top_variance_share(table[1:], k=1) > 0.9
    with pytest.raises(ValueError, match="normalisation"):
        normalised(table, "pca")
