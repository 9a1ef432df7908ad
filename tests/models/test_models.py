"""Every registered model: shapes, causality (causal models), learning, save/load round trip."""

from __future__ import annotations

import pytest
import torch
from tests.models.toys import toy_context, toy_eval_batch, toy_train_batch

from mosaicrec.registry import MODELS
from mosaicrec.training.weights import load_weights, save_weights

NAMES = MODELS.names()


def make(name: str, seed: int = 0, **overrides):
    cls = MODELS.get(name)
    torch.manual_seed(seed)
    ctx = toy_context(cls)
    make_cfg = getattr(cls, "example_config", None)  # models needing more than defaults (e.g. a backbone)
    return cls(make_cfg(**overrides) if make_cfg else cls.Config(**overrides), ctx), ctx


def test_registry_has_the_baselines():
    assert {"sasrec", "gru4rec", "bert4rec"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(name):
    model, ctx = make(name)
    model.eval()
    batch = toy_eval_batch(ctx)
    with torch.no_grad():
        u = model.user_repr(batch)  # [B, D]
        v = model.item_vectors()  # [N+1, D]
        s = model.score(batch)  # [B, N+1]
    assert u.shape[0] == len(batch) and v.shape == (ctx.n_items + 1, u.shape[1])
    assert s.shape == (len(batch), ctx.n_items + 1)
    assert torch.isfinite(s).all()
    loss = model.train().loss(toy_train_batch(ctx))
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("name", [n for n in NAMES if getattr(MODELS.get(n), "causal", False)])
def test_causal_models_ignore_the_future(name):
    model, ctx = make(name)
    model.eval()
    batch = toy_train_batch(ctx, full=True)
    t = ctx.max_len // 2
    changed = batch.items.clone()
    changed[:, t + 1] = changed[:, t + 1] % ctx.n_items + 1  # a different item at step t+1
    with torch.no_grad():
        before = model.sequence_states(batch)  # [B, L, D]
        after = model.sequence_states(type(batch)(**{**batch.__dict__, "items": changed}))
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1])
    assert not torch.allclose(after[:, t + 1:], before[:, t + 1:])  # the change is seen later on


@pytest.mark.parametrize("name", NAMES)
def test_a_few_optimiser_steps_lower_the_loss(name):
    model, ctx = make(name, dropout=0.0) if "dropout" in MODELS.get(name).Config.model_fields else make(name)
    batch = toy_train_batch(ctx)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_at_fixed_seed() -> float:
        torch.manual_seed(123)  # same negatives / cloze masks before and after
        with torch.no_grad():
            return float(model.loss(batch))

    model.train()
    start = loss_at_fixed_seed()
    for step in range(30):
        torch.manual_seed(step)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert loss_at_fixed_seed() < 0.8 * start


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_gives_identical_scores(name, tmp_path):
    model, ctx = make(name, seed=0)
    with torch.no_grad():  # move off the initial state so the check is meaningful
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "model.safetensors"
    save_weights(model, path)
    other, _ = make(name, seed=1)
    batch = toy_eval_batch(ctx)
    model.eval()
    other.eval()
    with torch.no_grad():
        assert not torch.equal(other.score(batch), model.score(batch))
        load_weights(other, path)
        assert torch.equal(other.score(batch), model.score(batch))


def test_load_weights_names_the_bad_file(tmp_path):
    model, _ = make("sasrec")
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_weights(model, bad)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_weights(model, tmp_path / "missing.safetensors")


@pytest.mark.parametrize("loss", ["ce", "sampled_ce", "bce"])
def test_sasrec_losses_all_learn(loss):
    model, ctx = make("sasrec", dropout=0.0, loss=loss, n_negatives=8)
    batch = toy_train_batch(ctx)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(5)
    start = float(model.loss(batch))
    for step in range(30):
        torch.manual_seed(step)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    torch.manual_seed(5)
    assert float(model.loss(batch)) < 0.8 * start


def test_sampled_ce_equals_full_ce_when_negatives_cover_all_items_once(monkeypatch):
    from mosaicrec.models.layers.losses import full_ce, sampled_ce

    torch.manual_seed(0)
    h, vecs = torch.randn(5, 4), torch.randn(7, 4)  # 6 items
    targets = torch.tensor([1, 2, 3, 4, 6])
    # Fix the draw to every item once: the target is masked among the negatives and appears
    # once as the positive, so the sampled softmax is exactly the full softmax.
    monkeypatch.setattr(torch, "randint", lambda lo, hi, size, device=None: torch.arange(1, 7))
    got = sampled_ce(h, vecs, targets, n_negatives=6)
    torch.testing.assert_close(got, full_ce(h, vecs, targets))


def test_chunked_full_ce_matches_the_plain_softmax_in_value_and_gradients(monkeypatch):
    """The fused chunked CE (used with gradients on) equals F.cross_entropy on the full logits."""
    import torch.nn.functional as F

    from mosaicrec.models.layers import losses

    monkeypatch.setattr(losses, "CE_CHUNK_FLOATS", 3 * 11)  # 3 rows per chunk, last chunk partial
    torch.manual_seed(0)
    h = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    vecs = torch.randn(11, 4, dtype=torch.float64, requires_grad=True)  # 10 items + padding row
    targets = torch.tensor([1, 2, 3, 10, 5, 5, 7, 8, 9, 1])
    got = losses.full_ce(h, vecs, targets)
    assert got.grad_fn is not None and "Chunked" in type(got.grad_fn).__name__  # the fused path ran
    g_got = torch.autograd.grad(2.5 * got, [h, vecs])
    logits = h @ vecs.T
    logits = torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], dim=1)
    want = F.cross_entropy(logits, targets)
    g_want = torch.autograd.grad(2.5 * want, [h, vecs])
    torch.testing.assert_close(got, want)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.all(g_got[1][0] == 0)  # the padding row never gets a gradient
    with torch.no_grad():  # evaluation path: plain softmax, same value
        torch.testing.assert_close(losses.full_ce(h, vecs, targets), want)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_attn_dropout_defaults_to_dropout_and_zero_is_deterministic(name):
    model, _ = make(name, dropout=0.3)
    assert all(b.attn.dropout == 0.3 for b in model.encoder.blocks)
    model, ctx = make(name, dropout=0.0, attn_dropout=0.0)
    assert all(b.attn.dropout == 0.0 for b in model.encoder.blocks)
    model.train()
    batch = toy_eval_batch(ctx)
    torch.testing.assert_close(model.user_repr(batch), model.user_repr(batch))  # no dropout anywhere


@pytest.mark.parametrize("heads", [1, 2])
def test_sasrec_last_position_fast_path_equals_the_full_forward(heads):
    """user_repr runs the last block for the last position only; same numbers as the full pass."""
    model, ctx = make("sasrec", heads=heads, ffn_mult=2)
    model.eval()
    batch = toy_eval_batch(ctx)
    batch.items[0] = 0  # an empty history too (padding query attends to itself)
    with torch.no_grad():
        torch.testing.assert_close(model.user_repr(batch), model.sequence_states(batch)[:, -1])


@pytest.mark.parametrize("chunk", [10 ** 9, 1, 25])
def test_bert4rec_user_repr_equals_the_full_forward(chunk):
    """user_repr (last block for the [MASK] position only; in eval mode in length-sorted chunks
    of rows cut to their longest sequence) equals the last state of the full forward."""
    model, ctx = make("bert4rec", heads=2)
    model.eval()
    model.eval_chunk_tokens = chunk  # one pass / one row per chunk / a few rows per chunk
    batch = toy_eval_batch(ctx)
    batch.items[0] = 0  # an empty history too ([MASK] alone)
    seq = torch.cat([batch.items[:, 1:], torch.full_like(batch.items[:, :1], model.mask_id)], dim=1)
    with torch.no_grad():
        got = model.user_repr(batch)  # [B, D]
        want = model.encode(seq)[:, -1]  # [B, D]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert len(batch) > 2 and torch.unique(batch.lengths).numel() > 1  # rows of different lengths
