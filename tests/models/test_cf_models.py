"""The CF models (bprmf, lightgcn, vbpr, freedom, lirdrec) on a toy context: shapes, training
hook, negative sampling, BPR loss decreasing, save/load round trip, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.cf.base import CFRecommender, PairDataset, toy_context
from mosaicrec.registry import MODELS

CF_MODELS = ["bprmf", "lightgcn", "vbpr", "freedom", "lirdrec"]


def build(name, ctx=None, **params):
    cls = MODELS.get(name)
    torch.manual_seed(0)
    return cls(cls.Config(**params), ctx if ctx is not None else cls.example_context())


def eval_batch(users):
    users = torch.as_tensor(users)
    z = torch.zeros(len(users), 1, dtype=torch.long)
    return SeqBatch(items=z, domains=z, lengths=torch.ones(len(users), dtype=torch.long), users=users,
                    targets=torch.zeros(len(users), dtype=torch.long), target_domains=torch.zeros(len(users), dtype=torch.long))


def train_batch(model):
    ds = model.train_dataset()
    return model.collate_train(ds.__getitems__(list(range(len(ds)))))


@pytest.mark.parametrize("name", CF_MODELS)
def test_shapes_and_kind(name):
    model = build(name).eval()
    assert model.kind == "cf" and isinstance(model, CFRecommender)
    ctx = model.ctx
    scores = model.score(eval_batch([0, 3, 5]))
    assert scores.shape == (3, ctx.n_items + 1)
    assert torch.isfinite(scores).all()
    assert model.item_vectors().shape[0] == ctx.n_items + 1


@pytest.mark.parametrize("name", CF_MODELS)
def test_bpr_steps_lower_the_loss(name):
    model = build(name)
    model.train()
    batch = train_batch(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def loss_at(seed):
        torch.manual_seed(seed)  # same negatives for the before/after comparison
        return model.loss(batch)

    with torch.no_grad():
        before = loss_at(123).item()
    for step in range(30):
        model.on_epoch_start(step)
        opt.zero_grad()
        loss_at(step).backward()
        opt.step()
    with torch.no_grad():
        after = loss_at(123).item()
    assert after < before - 0.05, (before, after)


@pytest.mark.parametrize("name", CF_MODELS)
def test_save_load_round_trip_gives_identical_scores(name, tmp_path):
    from safetensors.torch import load_file, save_file

    model = build(name)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = train_batch(model)
    for step in range(3):
        model.on_epoch_start(step)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    other = build(name)
    other.load_state_dict(load_file(tmp_path / "m.safetensors"))
    other.eval()
    b = eval_batch([0, 1, 2, 3, 4, 5])
    assert torch.equal(model.score(b), other.score(b))


def test_train_dataset_covers_each_interaction_once_and_collates():
    ctx = toy_context()
    model = build("bprmf", ctx)
    ds = model.train_dataset()
    assert isinstance(ds, PairDataset) and len(ds) == len(ctx.train_pairs)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, collate_fn=model.collate_train)
    seen = []
    for batch in loader:
        assert batch.users.shape == (len(batch),) and batch.targets.shape == (len(batch), 1)
        seen += list(zip(batch.users.tolist(), batch.targets[:, 0].tolist(), strict=True))
    assert sorted(seen) == sorted(map(tuple, ctx.train_pairs.tolist()))


def test_negatives_are_unseen_warm_items():
    ctx = toy_context(n_users=5, n_items=12, cold=(11, 12))
    model = build("bprmf", ctx)
    seen = {(int(u), int(i)) for u, i in ctx.train_pairs}
    users = torch.arange(5).repeat(400)
    torch.manual_seed(0)
    neg = model.sample_negatives(users)
    assert not any((int(u), int(n)) in seen for u, n in zip(users, neg, strict=True))
    assert set(neg.tolist()) <= set(ctx.train_pairs[:, 1].tolist())  # never a cold / padding item
    assert 0 not in neg.tolist()


def test_eval_cache_is_refreshed_after_training():
    model = build("lightgcn")
    b = eval_batch([0, 1])
    model.eval()
    s1 = model.score(b)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.zero_grad()
    model.loss(train_batch(model)).backward()
    opt.step()
    model.eval()
    assert not torch.equal(s1, model.score(b))


def test_missing_inputs_are_clear_errors():
    ctx = toy_context(features={})
    with pytest.raises(ValueError, match="needs item features"):
        build("lirdrec", ctx)
    with pytest.raises(ValueError, match="feature 'caption' not in"):
        build("vbpr", toy_context(), features=["caption"])
    bad = toy_context()
    bad.train_pairs = None
    with pytest.raises(ValueError, match="train_pairs is empty"):
        build("lightgcn", bad)
    with pytest.raises(ValueError, match="unknown feature"):
        build("freedom", toy_context(), knn_weights={"audio": 1.0}).eval().score(eval_batch([0]))


def test_freedom_prunes_edges_per_epoch():
    model = build("freedom", edge_drop=0.5)
    n_edges = len(model.edge_users)
    model.on_epoch_start(0)
    a1 = model.train_adj()
    assert a1.nnz == 2 * int(n_edges * 0.5)
    model.on_epoch_start(1)
    assert model.train_adj() is not a1
    assert model.full_adj.nnz == 2 * n_edges  # evaluation uses the full graph


def test_a_learnable_preference_is_learned():
    """Users 0-9 like items 1-5, users 10-19 items 6-10 (half of each group held out): after BPR
    training, each user ranks its group's held-out items above the other group's."""
    rng = np.random.default_rng(0)
    pairs, held = [], []
    for u in range(20):
        group = np.arange(1, 6) if u < 10 else np.arange(6, 11)
        perm = rng.permutation(group)
        pairs += [(u, int(i)) for i in perm[:3]]
        held.append(perm[3:])
    ctx = toy_context(n_users=20, n_items=10)
    ctx.train_pairs = np.array(pairs)
    model = build("lightgcn", ctx, dim=8, reg_weight=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = train_batch(model)
    for _ in range(60):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    model.eval()
    scores = model.score(eval_batch(list(range(20))))
    wins = 0
    for u in range(20):
        other = np.arange(6, 11) if u < 10 else np.arange(1, 6)
        wins += int(scores[u, held[u]].min() > scores[u, other].max())
    assert wins >= 16


def test_eval_cache_follows_in_place_parameter_changes():
    model = build("lirdrec").eval()
    b = eval_batch([0, 1])
    s1 = model.score(b)
    assert torch.equal(s1, model.score(b))  # cached, same values
    with torch.no_grad():
        model.encoders[0][0].weight.add_(0.5)  # still in eval mode
    assert not torch.equal(s1, model.score(b))


def test_loss_accepts_sequence_window_batches():
    """Fed [B, L] window targets, the loss pairs every non-zero target with its row's user."""
    model = build("bprmf")
    targets = torch.tensor([[0, 2, 3], [0, 0, 5]])
    batch = SeqBatch(items=targets, domains=torch.zeros_like(targets), lengths=torch.tensor([2, 1]),
                     users=torch.tensor([1, 4]), targets=targets, target_domains=torch.zeros_like(targets))
    got = {}
    model.bpr_terms = lambda u, p, n: got.update(u=u.tolist(), p=p.tolist()) or torch.tensor(0.0)
    model.loss(batch)
    assert got == {"u": [1, 1, 4], "p": [2, 3, 5]}
