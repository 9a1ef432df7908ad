"""The cheaper training step of the cdsr models computes what the previous one computed.

The previous forward (session 3: one ``CausalEncoder`` per (view, modality) over the padded
window, one per-domain loop) is kept here as a reference, built from the same weights, and
compared with the current one on fixed seeds (dropout 0, so that random masks do not differ).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mosaicrec.models.cdsr.layers import CausalEncoder, align_to_merged, domain_view, trim_view
from mosaicrec.models.cdsr.packed import PackedEncoders

from .test_cdsr import N_PER_DOMAIN, build, toy_batch, toy_context


def _window(rows: int = 5, length: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, length, generator=g) > 0.4  # [B, L] holes anywhere, as in per-domain views
    mask[:, -1] = True
    mask[0] = False  # a row without any real token
    cols = torch.sort(torch.randint(0, 9, (rows, length), generator=g), 1).values  # [B, L]
    return mask, cols


@pytest.mark.parametrize("layers", [1, 2])
def test_packed_encoders_equal_separate_causal_encoders(layers):
    """Same seed -> same initial weights as G CausalEncoders; same outputs and gradients."""
    torch.manual_seed(3)
    packed = PackedEncoders(3, 16, layers, 2, 0.0, 10)
    torch.manual_seed(3)
    refs = [CausalEncoder(16, layers, 2, 0.0, 10) for _ in range(3)]
    mask, cols = _window()
    x = torch.randn(3, *mask.shape, 16, requires_grad=True)  # [G, B, L, D]
    out = packed(x, mask, cols, 9)  # [G, B, L, D]
    expected = torch.stack([refs[g](x[g], mask, cols, 9) for g in range(3)])
    torch.testing.assert_close(out, expected)
    assert float(out.detach()[:, ~mask].abs().sum()) == 0.0  # padding positions are 0
    w = torch.randn_like(out)
    gx, gp = torch.autograd.grad((out * w).sum(), [x, packed.blocks[0].ff1_w])  # type: ignore[union-attr]
    gx_ref, *gp_ref = torch.autograd.grad((expected * w).sum(), [x, *[r.blocks[0].ffn[0].weight for r in refs]])
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gp, torch.stack([g.T for g in gp_ref]))
    for g in range(3):  # member() exports encoder g's weights
        torch.testing.assert_close(packed.member(g)(x[g], mask, cols, 9), expected[g])


@pytest.mark.parametrize("buckets", [1, 2, 3, 8])
def test_length_buckets_change_nothing(buckets):
    """Attention in length buckets (rows of similar length, each in its own shorter window)
    gives the single-window result, for any bucket count (more buckets than rows included)."""
    from mosaicrec.models.cdsr.packed import bucket_layout

    torch.manual_seed(0)
    packed = PackedEncoders(2, 8, 2, 2, 0.0, 10, buckets=buckets)
    ref = [packed.member(g) for g in range(2)]
    mask, cols = _window(rows=6, length=9, seed=4)
    mask[1] = False
    mask[2, :-1] = False  # rows of need 0, 1 and up to 9
    x = torch.randn(2, *mask.shape, 8)
    torch.testing.assert_close(packed(x, mask, cols, 9), torch.stack([ref[g](x[g], mask, cols, 9) for g in range(2)]))
    sel, layout = bucket_layout(mask, 2, buckets)
    assert sorted(sel.tolist()) == mask.reshape(-1).nonzero().squeeze(1).tolist()  # every real token once
    assert sum(bk.end - bk.start for bk in layout) == len(sel) and len(layout) <= buckets
    if buckets >= 3:
        assert min(bk.length for bk in layout) < 9  # short rows got a shorter window


def test_packed_shared_encoder_and_default_positions():
    torch.manual_seed(0)
    packed = PackedEncoders(1, 8, 1, 1, 0.0, 10)
    ref = packed.member(0).eval()
    mask, _ = _window(seed=1)
    x = torch.randn(4, *mask.shape, 8)  # 4 inputs through ONE shared encoder
    out = packed.eval()(x, mask)
    torch.testing.assert_close(out, torch.stack([ref(x[i], mask) for i in range(4)]))
    with pytest.raises(ValueError, match="exceeds max_len"):
        packed(torch.randn(1, 2, 11, 8), torch.ones(2, 11, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 inputs for 2 encoders"):
        PackedEncoders(2, 8, 1, 1, 0.0, 10)(torch.randn(3, 2, 4, 8), torch.ones(2, 4, dtype=torch.bool))


def test_packed_encoders_train_mode_dropout_only_touches_real_tokens():
    torch.manual_seed(0)
    packed = PackedEncoders(2, 8, 1, 2, 0.5, 10).train()
    mask, cols = _window(seed=2)
    out = packed(torch.randn(2, *mask.shape, 8), mask, cols, 9)
    assert torch.isfinite(out).all() and float(out.detach()[:, ~mask].abs().sum()) == 0.0


# ---- whole models: the session-3 forward as a reference ------------------------------------

def reference_encode(model, batch):
    """The previous CrossDomainRecommender.encode: one CausalEncoder per (view, modality)."""
    tables = model.item_rows()
    n_m = len(model.modalities)

    def run(view, xs, mask, cols=None, span=None):
        enc = model.encoders[view]
        if enc.groups == 1:
            e = enc.member(0)
            return e(xs.flatten(0, 1), mask.repeat(n_m, 1), None if cols is None else cols.repeat(n_m, 1),
                     span).view_as(xs)
        return torch.stack([enc.member(i)(xs[i], mask, cols, span) for i in range(n_m)])

    inter = intra = None
    if model.cfg.use_inter:
        inter = run("inter", tables.stacked(batch.items), batch.mask)
    if model.cfg.use_intra:
        per = []
        for d in range(model.n_domains):
            compact, cols, index, seen = domain_view(batch.items, batch.domains, d)
            compact, cols, index = trim_view(compact, cols, index)
            states = run(f"intra{d}", tables.stacked(compact), compact != 0, cols, batch.items.shape[1])
            per.append(torch.stack([align_to_merged(states[i], index, seen, model.empty[d, i]) for i in range(n_m)]))
        intra = torch.stack(per)
    return inter, intra


def reference_loss(model, batch, negs):
    """The previous CrossDomainRecommender.loss with loss_scope sampled and the negatives ``negs``."""
    inter, intra = reference_encode(model, batch)
    from mosaicrec.models.cdsr.base import Views

    views = Views(intra, inter, model.item_rows())
    cfg = model.cfg
    weights = cfg.domain_loss_weights or [1.0] * model.n_domains
    total = torch.zeros(())

    def ce(parts, target, neg, combine=True):
        fuse = model.combine if combine else (lambda xs: xs[0])
        logits = fuse([torch.cat([(u * table(target)).sum(-1, keepdim=True),
                                  (u @ table(neg).T).masked_fill(neg[None] == target[:, None], -1e9)], 1)
                       for u, table in parts])
        return F.cross_entropy(logits, torch.zeros_like(target))

    for d in range(model.n_domains):
        b, t = ((batch.targets > 0) & (batch.target_domains == d)).nonzero(as_tuple=True)
        if len(b) == 0:
            continue
        target = batch.targets[b, t]
        total = total + weights[d] * ce(model.head_parts(views, d, b, t), target, negs[d])
        if inter is not None and cfg.inter_loss_weight > 0:
            total = total + cfg.inter_loss_weight * ce(model.uniform_parts(inter[:, b, t], views.tables),
                                                       target, negs[d], combine=False)
        if intra is not None and cfg.intra_loss_weight > 0:
            total = total + cfg.intra_loss_weight * ce(model.uniform_parts(intra[d][:, b, t], views.tables),
                                                       target, negs[d], combine=False)
    return total


VARIANTS = [dict(), dict(use_intra=False), dict(use_inter=False), dict(share_modality_encoders=True),
            dict(layers=2, intra_loss_weight=0.5, domain_loss_weights=[1.0, 0.5, 2.0])]


@pytest.mark.parametrize("name", ["haf_vt", "llm_emf"])
@pytest.mark.parametrize("over", VARIANTS)
def test_encode_and_loss_equal_the_previous_forward(name, over):
    ctx = toy_context(image_present=np.arange(sum(N_PER_DOMAIN) + 1) % 4 != 0)
    model = build(name, ctx, loss_scope="sampled", n_negatives=5, **over).train()  # dropout 0
    batch = toy_batch(ctx, b=7)
    views = model.encode(batch)
    inter, intra = reference_encode(model, batch)
    for got, ref in ((views.inter, inter), (views.intra, intra)):
        assert (got is None) == (ref is None)
        if got is not None:
            torch.testing.assert_close(got, ref)
    torch.manual_seed(11)
    loss = model.loss(batch)
    torch.manual_seed(11)  # the same negatives: drawn first, one randint per domain
    negs = [model.domain_cands(d)[torch.randint(len(model.domain_cands(d)), (5,))] for d in range(model.n_domains)]
    torch.testing.assert_close(loss, reference_loss(model, batch, negs))


# ---- C2DSR -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [0, 1, 2])
def test_c2dsr_graph_rows_equal_the_full_propagation(layers):
    """graph(ids) (last round for the requested rows only) == graph()[ids], values and gradients."""
    from mosaicrec.models.c2dsr import GraphEmbedding, bipartite_blocks

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 9, 60), rng.integers(1, 15, 60)
    torch.manual_seed(0)
    g = GraphEmbedding(bipartite_blocks(users, items, 9, 16), 9, 16, hidden=4, layers=layers)
    ids = torch.tensor([0, 3, 16, 5, 3, 12])  # padding, repeats, an item without edges (16)
    assert 16 not in set(items.tolist())
    w = torch.randn(len(ids), 4)
    rows = g(ids)
    full = g()
    torch.testing.assert_close(rows, full[ids])
    assert float(rows[0].detach().abs().sum()) == 0.0
    grads = torch.autograd.grad((rows * w).sum(), [g.users, g.items], allow_unused=True)
    grads_ref = torch.autograd.grad((full[ids] * w).sum(), [g.users, g.items], allow_unused=True)
    for a, b in zip(grads, grads_ref, strict=True):
        if a is None or b is None:  # layers=0: users unused on both paths
            assert a is None and b is None and layers == 0
        else:
            torch.testing.assert_close(a, b)


def c2dsr_reference_loss(model, batch, negatives, corruption):
    """The previous C2DSR.loss: full graph tables, separate encoder passes, replayed random draws."""
    tables = [g() for g in model.graphs]  # the full propagation (session-3 path)
    encs = [e.member(0) for e in model.encoders]
    merged = encs[0](tables[0][batch.items], batch.mask)
    aligned, pooled = [], []
    for d in range(model.n_domains):
        compact, cols, index, seen = domain_view(batch.items, batch.domains, d)
        compact, cols, index = trim_view(compact, cols, index)
        mask = compact != 0
        states = encs[1 + d](tables[1 + d][compact], mask, cols, batch.items.shape[1])
        aligned.append(align_to_merged(states, index, seen, model.empty[d]))
        pooled.append(states.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))
    replay = iter(negatives)

    def ce(user, target):  # the previous sampled loss term, drawing its own negatives
        neg = next(replay)
        pos = (user * model.out[target]).sum(-1, keepdim=True) + model.bias[target, None]
        negs = (user @ model.out[neg].T + model.bias[neg]).masked_fill(neg[None] == target[:, None], -1e9)
        return F.cross_entropy(torch.cat([pos, negs], 1), torch.zeros_like(target))

    total = torch.zeros(())
    for d in range(model.n_domains):
        b, t = ((batch.targets > 0) & (batch.target_domains == d)).nonzero(as_tuple=True)
        if not len(b):
            continue
        target = batch.targets[b, t]
        total = total + ce(aligned[d][b, t] + merged[b, t], target)
        total = total + model.cfg.mixed_loss_weight * ce(merged[b, t], target)
    corrupt, doms, rows = corruption
    count = batch.mask.sum(1, keepdim=True).clamp(min=1)
    cross = merged.sum(1) / count
    reps = corrupt.shape[0] // len(batch)
    negs = encs[0](tables[0][corrupt], batch.mask.repeat(reps, 1)).sum(1).view(reps, len(batch), -1) / count
    info = torch.zeros(())
    for j, d in enumerate(doms):
        has, neg = rows[j], negs[j if reps > 1 else 0]
        pos_s, neg_s = model.disc(pooled[d], cross).squeeze(-1), model.disc(pooled[d], neg).squeeze(-1)
        info = info + F.binary_cross_entropy_with_logits(pos_s[has], torch.ones_like(pos_s[has])) \
            + F.binary_cross_entropy_with_logits(neg_s[has], torch.zeros_like(neg_s[has]))
    return total + model.cfg.infomax_weight * info


@pytest.mark.parametrize("mode", ["sampled_domain", "every_domain"])
@pytest.mark.parametrize("layers", [1, 2])
def test_c2dsr_loss_and_gradients_equal_the_previous_forward(mode, layers):
    ctx = toy_context()
    model = build("c2dsr", ctx, loss_scope="sampled", n_negatives=6, infomax_corruption=mode,
                  infomax_weight=0.7, gnn_layers=layers).train()  # dropout 0
    batch = toy_batch(ctx, b=9)
    drawn: list[torch.Tensor] = []
    negatives, corruption = model._negatives, model._corruption
    model._negatives = lambda d: drawn.append(negatives(d)) or drawn[-1]
    seen: list = []
    model._corruption = lambda b: seen.append(corruption(b)) or seen[-1]
    loss = model.loss(batch)
    params = [model.graphs[0].users, model.graphs[0].items, model.graphs[2].items, model.out, model.empty, model.disc.weight]
    grads = torch.autograd.grad(loss, params)
    assert len(drawn) == 2 * ctx.n_domains and seen[0] is not None
    ref = c2dsr_reference_loss(model, batch, drawn, seen[0])
    torch.testing.assert_close(loss, ref)
    for a, b in zip(grads, torch.autograd.grad(ref, params), strict=True):
        torch.testing.assert_close(a, b)


def _legacy_state(model, name):
    """The model's state dict in the session-3 layout (one CausalEncoder per view/modality)."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoders.")}
    for key, enc in model.encoders.named_children():
        if name == "c2dsr":
            olds = [f"encoders.{key}."]
        else:
            olds = [f"encoders.{key}_{m}." for m in (["all"] if enc.groups == 1 else model.modalities)]
        for g, old in enumerate(olds):
            state.update({old + k: v for k, v in enc.member(g).state_dict().items()})
    return state


@pytest.mark.parametrize("name, over", [("haf_vt", {}), ("llm_emf", {"share_modality_encoders": True}),
                                        ("c2dsr", {"layers": 2})])
def test_weights_saved_before_packing_still_load(name, over):
    ctx = toy_context()
    model = build(name, ctx, **over).eval()
    legacy = _legacy_state(model, name)
    assert any(".blocks.0.qkv.weight" in k for k in legacy)
    fresh = build(name, ctx, **over)
    with torch.no_grad():
        for p in fresh.parameters():
            p.normal_()  # nothing left of the original weights unless loading restores them
    fresh.load_state_dict(legacy, strict=True)
    batch = toy_batch(ctx, train=False)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval().score(batch), model.score(batch))
