"""LIRDRec specifics: ID-free items, the with_ids variant, cold items scored from features,
the DCT shared branch, and the progressive-weight-copying schedule (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.cf.base import toy_context
from mosaicrec.models.cf.pwc import PWC, decay_step
from mosaicrec.models.lirdrec import LIRDRec, LIRDRecConfig


def users_batch(users):
    users = torch.as_tensor(users)
    z = torch.zeros(len(users), 1, dtype=torch.long)
    return SeqBatch(items=z, domains=z, lengths=torch.ones(len(users), dtype=torch.long), users=users,
                    targets=torch.zeros(len(users), dtype=torch.long), target_domains=torch.zeros(len(users), dtype=torch.long))


def toy(**kw):
    return toy_context(n_users=7, n_items=11, features={"text": 16, "image": 5}, **kw)


def make(ctx=None, **params):
    torch.manual_seed(0)
    return LIRDRec(LIRDRecConfig(**params), ctx or toy())


def item_sized(model):
    n = model.ctx.n_items
    return [name for name, p in model.named_parameters() if n in p.shape or n + 1 in p.shape]


def test_id_free_has_no_item_parameters_and_with_ids_adds_one():
    assert item_sized(make()) == []
    assert item_sized(make(with_ids=True)) == ["item_ids.weight"]
    # 2 modalities + the shared branch -> 3 encoders, 3 user embeddings, 3 PWC scorers
    model = make()
    assert len(model.encoders) == 3 and model.user_prefs.shape == (3, 7, 64) and model.pwc.theta.shape == (7, 3)


def test_shared_branch_input_is_the_dct_of_the_features():
    ctx = toy()
    first, second = ctx.features["image"], ctx.features["text"]  # modalities sorted by name
    m1 = make(ctx, dct="1d")
    expect_1d = np.concatenate([scipy.fft.dct(first, norm="ortho", axis=1), scipy.fft.dct(second, norm="ortho", axis=1)], 1)
    np.testing.assert_allclose(m1.shared_in.numpy(), expect_1d, atol=1e-5)
    m2 = make(ctx, dct="2d")
    expect_2d = np.concatenate([scipy.fft.dctn(first, norm="ortho"), scipy.fft.dctn(second, norm="ortho")], 1)
    np.testing.assert_allclose(m2.shared_in.numpy(), expect_2d, atol=1e-5)
    m0 = make(ctx, dct="none")
    np.testing.assert_allclose(m0.shared_in.numpy(), np.concatenate([first, second], 1))


def test_cold_item_is_scored_from_its_features():
    ctx = toy(cold=(10, 11))
    assert 10 not in ctx.train_pairs[:, 1]
    model = make(ctx).eval()
    b = users_batch([0, 1, 2])
    s = model.score(b)
    assert torch.isfinite(s[:, 10]).all() and (s[:, 10] != s[:, 11]).all()
    # Giving the cold item 10 the features of a warm item changes its scores (content only).
    ctx2 = toy(cold=(10, 11))
    for f in ctx2.features.values():
        f[10] = f[3]
    s2 = make(ctx2).eval().score(b)
    assert not torch.allclose(s[:, 10], s2[:, 10])
    # An ID-based model cannot do this: bprmf's cold rows are untrained random vectors.


def test_pwc_schedule_hand_computed():
    # w1 = 0.5, base 0.9: epoch 1 -> 0.45 / 0.95 = 0.473684; epoch 2 -> 0.383684 / (0.383684 + 0.526316)
    w1, w2 = decay_step(0.5, 0.5, 1, 0.9)
    assert w1 == pytest.approx(0.45 / 0.95) and w2 == pytest.approx(0.5 / 0.95)
    w1b, w2b = decay_step(w1, w2, 2, 0.9)
    assert w1b == pytest.approx(w1 * 0.81 / (w1 * 0.81 + w2))
    assert w1b == pytest.approx(0.421631, abs=1e-6) and w1b + w2b == pytest.approx(1.0)


def test_pwc_copies_last_attention_into_theta():
    torch.manual_seed(0)
    pwc = PWC(n_users=4, n_branches=3, dim=8, w1=0.5, base=0.9).train()
    blocks = [torch.randn(4, 8) for _ in range(3)]
    att = pwc.attention(blocks)
    assert att.shape == (4, 3) and torch.allclose(att.sum(1), torch.ones(4))
    pwc.step_epoch(1)
    assert torch.allclose(pwc.theta.detach(), att.detach())
    assert float(pwc.w[0]) == pytest.approx(0.45 / 0.95)
    # the fused user vector is the attention-weighted concatenation
    fused = pwc(blocks)
    att2 = pwc.attention(blocks)
    assert torch.allclose(fused[:, 8:16], att2[:, 1:2] * blocks[1])


def test_model_epoch_hook_drives_pwc_and_state_restores_schedule():
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    ds = model.train_dataset()
    batch = model.collate_train(ds.__getitems__(list(range(len(ds)))))
    for epoch in range(3):
        model.on_epoch_start(epoch)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    w = (0.5, 0.5)
    for e in (1, 2, 3):
        w = decay_step(*w, e, 0.9)
    assert float(model.pwc.w[0]) == pytest.approx(w[0])
    other = make()
    other.load_state_dict(model.state_dict())
    assert float(other.pwc.w[0]) == pytest.approx(w[0])


def test_ablations_build_and_score():
    b = users_batch([0, 1])
    for params in ({"pwc": False}, {"dct": "none"}, {"dct": "2d"}, {"with_ids": True}, {"n_mm_layers": 0},
                   {"features": ["text"]}):
        s = make(**params).eval().score(b)
        assert s.shape == (2, 12) and torch.isfinite(s).all(), params
    assert make(features=["text"]).shared_in.shape[1] == 16


def test_explain_gives_branch_attention():
    out = make().eval().explain(users_batch([0, 2]))
    assert out["branch_attention"].shape == (2, 3)
    assert torch.allclose(out["branch_attention"].sum(1), torch.ones(2))
    assert make(pwc=False).explain(users_batch([0])) == {}


def test_resumed_model_still_copies_the_last_attention():
    # A run interrupted after epoch 2 and reloaded from its state dict must copy the attention of
    # epoch 2's last training step into theta at the start of epoch 3, like the uninterrupted run.
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    ds = model.train_dataset()
    batch = model.collate_train(ds.__getitems__(list(range(len(ds)))))
    for epoch in range(2):
        model.on_epoch_start(epoch)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    state = model.state_dict()
    assert state["pwc.last_att"].shape == (7, 3)
    resumed = make()
    resumed.load_state_dict(state)  # strict
    model.on_epoch_start(2)
    resumed.on_epoch_start(2)
    assert torch.equal(resumed.pwc.theta.detach(), model.pwc.theta.detach())
    assert torch.equal(resumed.pwc.theta.detach(), state["pwc.last_att"])
    # A state dict without the attention (before any training step, or from an older run) loads,
    # and then the epoch hook leaves theta as loaded.
    fresh = make()
    old = {k: v for k, v in state.items() if k != "pwc.last_att"}
    fresh.load_state_dict(old)
    fresh.on_epoch_start(2)
    assert torch.equal(fresh.pwc.theta.detach(), state["pwc.theta"])
    bad = dict(state, **{"pwc.last_att": torch.zeros(7, 2)})
    with pytest.raises(ValueError, match="pwc.last_att"):
        make().load_state_dict(bad)
