"""Cross-domain models (HAF-VT, LLM-EMF, C2DSR) on toy contexts with random features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.models.cdsr.layers import align_to_merged, domain_view
from mosaicrec.registry import MODELS

CDSR = ["haf_vt", "llm_emf", "c2dsr"]
N_PER_DOMAIN = (12, 9, 7)  # three domains: more than a hard-coded pair
L = 8


def toy_context(n_domains: int = 3, image_present: np.ndarray | None = None) -> ModelContext:
    rng = np.random.default_rng(0)
    sizes = N_PER_DOMAIN[:n_domains]
    n_items = sum(sizes)
    item_domain = np.concatenate([[-1], np.repeat(np.arange(n_domains), sizes)]).astype(np.int8)
    feats = {name: rng.normal(size=(n_items + 1, dim)).astype(np.float32)
             for name, dim in (("text", 16), ("aug", 16), ("image", 24))}
    for f in feats.values():
        f[0] = 0
    masks = {}
    if image_present is not None:
        masks["image"] = image_present
    users = rng.integers(0, 20, size=200)
    pairs = np.stack([users, rng.integers(1, n_items + 1, size=200)], 1)
    return ModelContext(n_items=n_items, n_users=20, n_domains=n_domains, item_domain=item_domain, max_len=L,
                        domains=[f"D{d}" for d in range(n_domains)], features=feats, feature_masks=masks,
                        train_pairs=pairs)


def toy_batch(ctx: ModelContext, b: int = 6, seed: int = 1, train: bool = True) -> SeqBatch:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, ctx.n_items + 1, (b, L), generator=g)
    lengths = torch.randint(2, L + 1, (b,), generator=g)
    for i, n in enumerate(lengths.tolist()):
        items[i, : L - n] = 0
    item_dom = torch.as_tensor(ctx.item_domain.astype(np.int64))
    domains = torch.where(items > 0, item_dom[items], 0)
    if train:
        targets = torch.zeros_like(items)
        targets[:, :-1] = items[:, 1:]
        targets[:, -1] = torch.randint(1, ctx.n_items + 1, (b,), generator=g)
        targets = targets * (items > 0)
        tdom = torch.where(targets > 0, item_dom[targets], 0)
    else:
        targets = torch.randint(1, ctx.n_items + 1, (b,), generator=g)
        tdom = item_dom[targets]
    return SeqBatch(items=items, domains=domains, lengths=lengths, users=torch.arange(b) % ctx.n_users,
                    targets=targets, target_domains=tdom)


def build(name: str, ctx: ModelContext, **over):
    cls = MODELS.get(name)
    params = dict(hidden=16, layers=1, heads=2, dropout=0.0)
    if name == "haf_vt":
        params.update(text_features=["text"], image_features=["image"])
    if name == "llm_emf":
        params.update(text_features=["aug"], image_features=["image"])
    params.update(over)
    torch.manual_seed(0)
    return cls(cls.Config(**params), ctx)


def test_domain_view_hand_example():
    # merged: [pad, a0, b1, c0, d1, e0] with domains in the second row
    items = torch.tensor([[0, 5, 7, 6, 8, 9]])
    doms = torch.tensor([[0, 0, 1, 0, 1, 0]])
    compact, cols, index, seen = domain_view(items, doms, 0)
    assert cols[0, 3:].tolist() == [1, 3, 5]
    assert compact.tolist() == [[0, 0, 0, 5, 6, 9]]
    assert seen.tolist() == [[False, True, True, True, True, True]]
    assert index[0, 1:].tolist() == [3, 3, 4, 4, 5]
    compact1, cols1, index1, seen1 = domain_view(items, doms, 1)
    assert cols1[0, 4:].tolist() == [2, 4]
    assert compact1.tolist() == [[0, 0, 0, 0, 7, 8]]
    assert seen1.tolist() == [[False, False, True, True, True, True]]
    assert index1[0, 2:].tolist() == [4, 4, 5, 5]
    states = torch.arange(6, dtype=torch.float).view(1, 6, 1)
    out = align_to_merged(states, index1, seen1, torch.tensor([-1.0]))
    assert out.view(-1).tolist() == [-1, -1, 4, 4, 5, 5]


@pytest.mark.parametrize("name", CDSR)
def test_shapes_and_scores_for_three_domains(name):
    ctx = toy_context()
    model = build(name, ctx).eval()
    batch = toy_batch(ctx, train=False)
    with torch.no_grad():
        scores = model.score(batch)
        user, items = model.user_repr(batch), model.item_vectors()
    assert scores.shape == (6, ctx.n_items + 1)
    assert items.shape[0] == ctx.n_items + 1 and user.shape[1] == items.shape[1]
    assert torch.isfinite(scores[:, 1:]).all()
    if name != "llm_emf":  # llm_emf's default prob fusion is not a dot product (documented)
        torch.testing.assert_close(scores[:, 1:], (user @ items.T)[:, 1:], rtol=1e-4, atol=1e-4)


def _states(model, batch):
    """Every per-position state the model's predictions are built from, as one list."""
    if isinstance(model, MODELS.get("c2dsr")):
        merged, aligned, _ = model.encode(batch)
        return [merged, *aligned]  # each [B, L, D]
    views = model.encode(batch)
    return [views.inter.transpose(0, 1)] + [v.transpose(0, 1) for v in views.intra]  # each [B, M, L, D]


@pytest.mark.parametrize("name", CDSR)
def test_causal_future_step_does_not_change_past(name):
    """Replacing the last item by one of ANOTHER domain changes no state before it (no leak of
    the future's domain composition into the per-domain views)."""
    ctx = toy_context()
    model = build(name, ctx).eval()
    batch = toy_batch(ctx, train=False)
    item_dom = torch.as_tensor(ctx.item_domain.astype(np.int64))
    alt = SeqBatch(**{k: v.clone() for k, v in vars(batch).items()})
    new_dom = (batch.domains[:, -1] + 1) % ctx.n_domains  # [B] a different domain
    first_of = torch.as_tensor([int(np.flatnonzero(ctx.item_domain == d)[0]) for d in range(ctx.n_domains)])
    alt.items[:, -1] = first_of[new_dom]
    alt.domains[:, -1] = item_dom[alt.items[:, -1]]
    assert (alt.domains[:, -1] != batch.domains[:, -1]).all()
    with torch.no_grad():
        before, after = _states(model, batch), _states(model, alt)
        for a, b in zip(before, after, strict=True):
            torch.testing.assert_close(a[..., :-1, :], b[..., :-1, :])
        assert not torch.allclose(before[0][..., -1, :], after[0][..., -1, :])
        assert not torch.allclose(model.score(batch), model.score(alt))


@pytest.mark.parametrize("name", CDSR)
def test_optimiser_steps_lower_the_loss(name):
    ctx = toy_context()
    model = build(name, ctx).train()
    batch = toy_batch(ctx)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model.loss(batch).detach())
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert np.isfinite(first) and float(model.loss(batch).detach()) < 0.7 * first


@pytest.mark.parametrize("name", CDSR)
def test_state_dict_round_trip_gives_identical_scores(name, tmp_path):
    from safetensors.torch import load_file, save_file

    ctx = toy_context()
    model = build(name, ctx).eval()
    batch = toy_batch(ctx, train=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    other = build(name, ctx).eval()
    torch.manual_seed(123)
    for p in other.parameters():
        torch.nn.init.normal_(p)
    other.load_state_dict(load_file(tmp_path / "m.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model.score(batch), other.score(batch))


@pytest.mark.parametrize("name", ["haf_vt", "llm_emf"])
def test_modalities_switch_off(name):
    ctx = toy_context()
    batch = toy_batch(ctx)
    text = "text" if name == "haf_vt" else "aug"
    variants = [dict(image_features=[]), dict(text_features=[], image_features=[]),
                dict(use_id=False), dict(use_inter=False), dict(use_intra=False)]
    for over in variants:
        model = build(name, ctx, **over)
        assert torch.isfinite(model.loss(batch))
        expected = (["id"] if over.get("use_id", True) else []) + over.get("text_features", [text]) + \
            over.get("image_features", ["image"])
        assert model.modalities == expected
    with pytest.raises(ValueError, match="no modality"):
        build(name, ctx, use_id=False, text_features=[], image_features=[])
    with pytest.raises(ValueError, match="both be false"):
        build(name, ctx, use_intra=False, use_inter=False)
    with pytest.raises(ValueError, match="feature 'clip_image' is not in"):
        build(name, ctx, image_features=["clip_image"])


def test_switched_off_modality_ignores_its_features():
    ctx = toy_context()
    batch = toy_batch(ctx, train=False)
    a = build("haf_vt", ctx, image_features=[]).eval()
    ctx2 = toy_context()
    ctx2.features["image"] = ctx2.features["image"] * 0 + 5.0
    b = build("haf_vt", ctx2, image_features=[]).eval()
    with torch.no_grad():
        torch.testing.assert_close(a.score(batch), b.score(batch))
        c = build("haf_vt", ctx2).eval()
        assert not torch.allclose(a.score(batch)[:, 1:], c.score(batch)[:, 1:])


def test_items_without_image_use_the_missing_vector():
    n_items = sum(N_PER_DOMAIN)
    present = np.ones(n_items + 1, dtype=bool)
    present[[2, 5, 13]] = False
    ctx = toy_context(image_present=present)
    model = build("haf_vt", ctx).eval()
    with torch.no_grad():
        img = model.content["image"]()  # [N+1, D]
        torch.testing.assert_close(img[2], model.content["image"].missing)
        torch.testing.assert_close(img[13], img[5])
        assert not torch.allclose(img[3], img[2])
        before = model.score(toy_batch(ctx, train=False))
        # garbage in the rows of absent images changes nothing
        ctx.features["image"][[2, 5, 13]] = 1e3
        again = build("haf_vt", ctx).eval()
        torch.testing.assert_close(before, again.score(toy_batch(ctx, train=False)))


@pytest.mark.parametrize("name", CDSR)
def test_two_domains_and_domain_weights(name):
    ctx = toy_context(n_domains=2)
    over = {} if name == "c2dsr" else {"domain_loss_weights": [1.0, 0.5]}
    model = build(name, ctx, **over)
    assert torch.isfinite(model.loss(toy_batch(ctx)))
    if name != "c2dsr":
        with pytest.raises(ValueError, match="2 domains"):
            build(name, ctx, domain_loss_weights=[1.0])


def test_haf_vt_explain_weights_sum_to_one():
    ctx = toy_context()
    model = build("haf_vt", ctx).eval()
    with torch.no_grad():
        w = model.explain(toy_batch(ctx, train=False))
    torch.testing.assert_close(w["modality"].sum(-1), torch.ones(6))
    torch.testing.assert_close(w["view"].sum(-1), torch.ones(6, 3))
    assert w["modality"].shape == (6, 3)


def test_llm_emf_prob_fusion_is_a_log_probability():
    ctx = toy_context()
    model = build("llm_emf", ctx).eval()
    batch = toy_batch(ctx, train=False)
    with torch.no_grad():
        views = model.encode(batch)
        b = torch.arange(len(batch))
        t = torch.full((len(batch),), L - 1)
        lp = model.head_logits(views, 1, b, t, model.domain_cands(1))
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(len(batch)))
    logit = build("llm_emf", ctx, prediction="logit").eval()
    with torch.no_grad():
        s = logit.score(batch)
        torch.testing.assert_close(s[:, 1:], (logit.user_repr(batch) @ logit.item_vectors().T)[:, 1:],
                                   rtol=1e-4, atol=1e-4)


def test_c2dsr_requires_train_pairs():
    ctx = toy_context()
    ctx.train_pairs = None
    with pytest.raises(ValueError, match="train_pairs"):
        build("c2dsr", ctx)


@pytest.mark.parametrize("name", ["haf_vt", "llm_emf"])
def test_sampled_loss_scope_learns(name):
    ctx = toy_context()
    model = build(name, ctx, loss_scope="sampled", n_negatives=5).train()
    batch = toy_batch(ctx)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def fixed() -> float:
        torch.manual_seed(7)
        with torch.no_grad():
            return float(model.loss(batch))

    first = fixed()
    for step in range(30):
        torch.manual_seed(step)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert fixed() < 0.7 * first


def test_llm_emf_scores_domain_items_with_domain_normalised_fusion():
    ctx = toy_context()
    model = build("llm_emf", ctx).eval()
    batch = toy_batch(ctx, train=False)
    with torch.no_grad():
        s = model.score(batch)
        views = model.encode(batch)
        i = 0
        d = int(batch.target_domains[i])
        cand = model.domain_cands(d)
        lp = model.head_logits(views, d, torch.tensor([i]), torch.tensor([L - 1]), cand)[0]
    torch.testing.assert_close(s[i, cand], lp)
    torch.testing.assert_close(s[i, cand].exp().sum(), torch.tensor(1.0))


@pytest.mark.parametrize("name", ["haf_vt", "llm_emf"])
def test_projecting_only_needed_rows_matches_the_full_table(name):
    """The training step projects only the batch's items + extra ids; states and item vectors
    must equal those of the full-catalogue projection (no dropout in eval mode)."""
    ctx = toy_context(image_present=np.arange(sum(N_PER_DOMAIN) + 1) % 3 != 0)
    model = build(name, ctx).eval()
    batch = toy_batch(ctx)
    extra = torch.tensor([5, 3, 3, 17])
    with torch.no_grad():
        full, part = model.encode(batch), model.encode(batch, extra, full=False)
        assert part.tables.ids is not None and len(part.tables.ids) < ctx.n_items + 1
        torch.testing.assert_close(part.inter, full.inter)
        torch.testing.assert_close(part.intra, full.intra)
        ids = torch.cat([batch.items.flatten(), extra])
        torch.testing.assert_close(part.tables(ids), full.tables(ids))
        torch.testing.assert_close(full.tables(torch.zeros(2, dtype=torch.long)), torch.zeros(2, full.tables.vecs.shape[0] * full.tables.vecs.shape[2]))


def test_trim_view_keeps_states_and_alignment():
    from mosaicrec.models.cdsr.layers import trim_view

    items = torch.tensor([[0, 0, 1, 5, 2, 6], [0, 3, 7, 8, 4, 9]])  # domain 0 = ids 1..4
    domains = (items >= 5).long() * (items > 0)
    compact, cols, index, seen = domain_view(items, domains, 0)
    c2, k2, i2 = trim_view(compact, cols, index)
    assert c2.tolist() == [[1, 2], [3, 4]]
    assert k2.tolist() == [[2, 4], [1, 4]]
    states = torch.arange(2 * 2, dtype=torch.float).view(2, 2, 1)  # [B, L', 1]
    out = align_to_merged(states, i2, seen, torch.tensor([-1.0]))  # [B, L, 1]
    assert out[..., 0].tolist() == [[-1, -1, 0, 0, 1, 1], [-1, 2, 2, 2, 3, 3]]


def test_c2dsr_corruption_keeps_one_domain_per_row():
    ctx = toy_context()
    model = build("c2dsr", ctx)
    batch = toy_batch(ctx, b=12)
    item_dom = torch.as_tensor(ctx.item_domain.astype(np.int64))
    keep = torch.arange(12) % 3  # [B] kept domain per row
    torch.manual_seed(0)
    out = model._corrupt(batch, keep)
    kept = (batch.items != 0) & (batch.domains == keep[:, None])
    assert torch.equal(out[kept], batch.items[kept])  # the kept domain is untouched
    assert torch.equal(out == 0, batch.items == 0)  # padding stays padding
    real = batch.items != 0
    assert torch.equal(item_dom[out[real]], batch.domains[real])  # replacements stay in their domain
    assert (out[real & ~kept] != batch.items[real & ~kept]).float().mean() > 0.5  # and are random


@pytest.mark.parametrize("mode", ["sampled_domain", "every_domain"])
def test_c2dsr_infomax_modes_train(mode):
    ctx = toy_context()
    model = build("c2dsr", ctx, infomax_corruption=mode, infomax_weight=1.0).train()
    batch = toy_batch(ctx)
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.disc.weight.grad is not None
    assert float(model.disc.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_c2dsr_graph_blocks_equal_full_adjacency_propagation(layers):
    """Propagating with the two bipartite blocks equals LightGCN on the dense symmetric-normalised
    adjacency [[0, R], [R^T, 0]] (hand-built here), and gradients reach users and items."""
    from mosaicrec.models.c2dsr import GraphEmbedding, bipartite_blocks

    users = np.array([0, 0, 1, 2, 2, 2, 0])
    items = np.array([1, 2, 2, 1, 3, 4, 1])  # (0, 1) twice: counted once
    n_u, n_i = 3, 4
    torch.manual_seed(0)
    g = GraphEmbedding(bipartite_blocks(users, items, n_u, n_i), n_u, n_i, hidden=5, layers=layers)
    a = torch.zeros(n_u + n_i + 1, n_u + n_i + 1)
    for u, i in {(int(u), int(i)) for u, i in zip(users, items, strict=True)}:
        a[u, n_u + i] = a[n_u + i, u] = 1.0
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.clamp(min=1) ** -0.5, torch.zeros_like(deg))
    a = inv[:, None] * a * inv[None, :]
    x = torch.cat([g.users, g.items]).detach()
    out, acc = x, x
    for _ in range(layers):
        out = a @ out
        acc = acc + out
    expected = (acc / (layers + 1))[n_u:]
    expected[0] = 0
    got = g()
    torch.testing.assert_close(got, expected)
    got.sum().backward()
    assert g.items.grad is not None and g.items.grad.abs().sum() > 0
    if layers:
        assert g.users.grad is not None and g.users.grad.abs().sum() > 0
