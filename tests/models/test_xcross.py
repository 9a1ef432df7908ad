"""lm_seqrec and xcross on tiny random BERT / Llama backbones (no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.models.toys import toy_eval_batch, toy_train_batch

from mosaicrec.models.base import ModelContext
from mosaicrec.models.xcross.backbone import TextTable
from mosaicrec.models.xcross.lm_seqrec import LMSeqRec, LMSeqRecConfig, example_backbone
from mosaicrec.models.xcross.model import XCross, XCrossConfig, example_adapters
from mosaicrec.models.xcross.multilora import Integrator, MultiLoRALinear, read_peft_adapter
from mosaicrec.models.xcross.text_base import example_fields
from mosaicrec.training.weights import load_weights, save_weights

N, L = 30, 8
HIDDEN, LAYERS = 32, 2  # the tiny backbones (models/xcross/tiny.py)


def context(kind: str = "bert") -> ModelContext:
    item_domain = np.zeros(N + 1, dtype=np.int8)
    item_domain[0] = -1
    ctx = ModelContext(n_items=N, n_users=6, n_domains=1, item_domain=item_domain, max_len=L, domains=["A"],
                       extra={"item_fields": example_fields(N), "backbone": example_backbone(kind)})
    ctx.extra["adapters"] = example_adapters(ctx)
    return ctx


@pytest.fixture(scope="module", params=["bert", "llama"])
def ctx(request) -> ModelContext:
    return context(request.param)


def test_history_text_keeps_the_newest_tokens():
    class Tok:  # one token per character, [CLS]=1 ... [SEP]=2 around a text
        pad_token_id, eos_token_id = 0, None

        def __call__(self, texts, add_special_tokens=False, truncation=False, max_length=None):
            one = isinstance(texts, str)
            ids = [[ord(c) for c in t][: max_length or None] for t in ([texts] if one else texts)]
            return {"input_ids": ids[0] if one else ids}

        def build_inputs_with_special_tokens(self, ids):
            return [1, *ids, 2]

    t = TextTable.build(Tok(), ["", "ab", "cde", "f"], item_tokens=2, separator=";", left_pad=False)
    assert t.ids == [[], [97, 98], [99, 100], [102]]  # item texts cut to 2 tokens
    # oldest -> newest: "ab;cd;f" = 7 tokens; budget 7 - 2 specials = 5 keeps the newest 5: ";cd;f"
    assert t.history_ids([1, 2, 3], budget=7) == [1, 59, 99, 100, 59, 102, 2]
    assert t.history_ids([1, 2, 3], budget=3) == [1, 102, 2]  # the newest item always survives
    assert t.history_ids([1, 2, 3], budget=100) == [1, 97, 98, 59, 99, 100, 59, 102, 2]
    ids, mask = t.collate([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    t.left_pad = True
    ids, mask = t.collate([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_integrators_selecting_one_domain_equal_that_domains_lora_model(ctx):
    batch = toy_eval_batch(ctx)
    reprs = []
    for j, path in enumerate(ctx.extra["adapters"]):
        x = XCross(XCrossConfig(integrator_init=f"select:{j}"), ctx).eval()
        lora = LMSeqRec(LMSeqRecConfig(init_adapter=path), ctx).eval()
        with torch.no_grad():
            ux, ul = x.user_repr(batch), lora.user_repr(batch)  # [B, D]
        torch.testing.assert_close(ux, ul, atol=1e-5, rtol=1e-5)
        reprs.append(ul)
    plain = LMSeqRec(LMSeqRecConfig(mode="frozen", head="none"), ctx).eval()
    with torch.no_grad():
        base = plain.user_repr(batch)
    # the check can fail: the adapters change the model and differ from each other
    assert (reprs[0] - base).abs().max() > 1e-2 and (reprs[0] - reprs[1]).abs().max() > 1e-2


@pytest.mark.parametrize(("input", "form"), [("unit", "residual"), ("layernorm", "bias")])
def test_selection_equals_the_lora_model_for_every_integrator_variant(ctx, input, form):
    batch = toy_eval_batch(ctx)
    x = XCross(XCrossConfig(integrator_init="select:1", integrator_input=input, integrator_form=form), ctx).eval()
    lora = LMSeqRec(LMSeqRecConfig(init_adapter=ctx.extra["adapters"][1]), ctx).eval()
    with torch.no_grad():
        torch.testing.assert_close(x.user_repr(batch), lora.user_repr(batch), atol=1e-5, rtol=1e-5)
        x.integrators[0].proj.weight.normal_(0, 0.5)  # the normalised input now moves S: no longer equal
        assert (x.user_repr(batch) - lora.user_repr(batch)).abs().max() > 1e-3


def test_selection_with_a_trained_like_integrator_is_not_the_lora_model(ctx):
    x = XCross(XCrossConfig(integrator_init="select:0"), ctx).eval()
    lora = LMSeqRec(LMSeqRecConfig(init_adapter=ctx.extra["adapters"][0]), ctx).eval()
    with torch.no_grad():
        x.integrators[0].proj.weight.normal_(0, 0.1)  # scaling factors now depend on the activations
        assert (x.user_repr(toy_eval_batch(ctx)) - lora.user_repr(toy_eval_batch(ctx))).abs().max() > 1e-3


def test_trainable_parameter_counts(ctx):
    n = len(ctx.extra["adapters"])
    x = XCross(XCrossConfig(), ctx)
    assert x.n_trainable() == LAYERS * (n * HIDDEN * n * n + n * n)  # one Linear(n*D -> n*n) per layer
    lora = LMSeqRec(LMSeqRecConfig(mode="lora", lora_r=4), ctx)
    assert lora.n_trainable() == LAYERS * 2 * 4 * (HIDDEN + HIDDEN)  # query/value (q_proj/v_proj): r*(in+out)
    frozen = LMSeqRec(LMSeqRecConfig(mode="frozen"), ctx)
    assert frozen.n_trainable() == HIDDEN * HIDDEN + HIDDEN  # the linear head only
    full = LMSeqRec(LMSeqRecConfig(mode="full"), ctx)
    assert full.n_trainable() == sum(p.numel() for p in full._base[0].parameters())
    # only the integrators (and a head when asked for) train
    names = {k for k, p in XCross(XCrossConfig(head="linear"), ctx).named_parameters() if p.requires_grad}
    assert names and all(k.startswith(("integrators.", "head.")) for k in names)


def test_base_weights_are_shared_not_copied(ctx):
    x = XCross(XCrossConfig(), ctx)
    plain = LMSeqRec(LMSeqRecConfig(mode="frozen", head="none"), ctx)
    n_base = sum(p.numel() for p in plain.parameters())
    # parameters = one base model + the integrators; the adapters are small buffers
    assert sum(p.numel() for p in x.parameters()) == n_base + x.integrator_parameters()
    wrapped = [m for m in x.modules() if isinstance(m, MultiLoRALinear)]
    assert len(wrapped) == LAYERS * 2
    ptrs = {m.base.weight.data_ptr() for m in wrapped}
    assert len(ptrs) == len(wrapped)  # one weight per wrapped layer, not one per adapter
    own = {p.data_ptr() for p in x.lm.parameters()}
    assert ptrs <= own  # the wrappers use the model's own tensors
    adapters = sum(b.numel() for m in wrapped for b in (m.lora_A, m.lora_B))
    assert adapters < 0.5 * n_base


def test_adapter_file_round_trip_and_errors(ctx, tmp_path):
    a = read_peft_adapter(ctx.extra["adapters"][0])
    assert a.r == 4 and a.scale == pytest.approx(4.0)  # lora_alpha 16 / r 4
    assert len(a.weights) == LAYERS * 2
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        read_peft_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3", "r": 1}))
    with pytest.raises(ValueError, match="IA3"):
        read_peft_adapter(tmp_path)


def test_lm_seqrec_adapter_save_load_gives_identical_scores(ctx, tmp_path):
    torch.manual_seed(0)
    model = LMSeqRec(LMSeqRecConfig(mode="lora", lora_r=4), ctx)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    model.save_adapter(tmp_path / "adapter")
    again = LMSeqRec(LMSeqRecConfig(mode="lora", lora_r=4, init_adapter=str(tmp_path / "adapter")), ctx)
    batch = toy_eval_batch(ctx)
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.equal(model.score(batch), again.score(batch))


def test_xcross_save_load_and_a_few_steps_lower_the_loss(ctx, tmp_path):
    torch.manual_seed(0)
    model = XCross(XCrossConfig(), ctx)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("integrators.")}
    batch = toy_train_batch(ctx)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    with torch.no_grad():
        start = float(model.loss(batch))
    for _ in range(30):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    with torch.no_grad():
        end = float(model.loss(batch))
    assert end < 0.8 * start
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen_before.items())  # base and adapters untouched
    save_weights(model, tmp_path / "model.safetensors")
    other = XCross(XCrossConfig(), ctx)
    ev = toy_eval_batch(ctx)
    model.eval()
    other.eval()
    with torch.no_grad():
        assert not torch.equal(other.score(ev), model.score(ev))
        load_weights(other, tmp_path / "model.safetensors")
        assert torch.equal(other.score(ev), model.score(ev))


def test_integrator_scales_may_be_negative_and_mix_streams():
    integ = Integrator(2, 3, "identity")
    h = torch.randn(2, 1, 1, 3)  # [n, B, T, D]
    torch.testing.assert_close(integ(h), h)
    with torch.no_grad():
        integ.proj.bias.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    out = integ(h)
    torch.testing.assert_close(out[0], 0.5 * h[0] - 1.0 * h[1])
    torch.testing.assert_close(out[1], 2.0 * h[1])
    with pytest.raises(ValueError, match="select:K"):
        Integrator.initial_bias(2, "select:5")


def test_integrator_inputs_and_the_residual_form_by_hand():
    h = torch.tensor([[3.0, -1.0, 1.0, 1.0], [0.0, 2.0, 2.0, 4.0]]).view(2, 1, 1, 4)  # [n=2, B, T, D=4]
    raw = Integrator(2, 4, "average", input="raw")
    assert raw.features(h).flatten().tolist() == [3.0, -1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 4.0]
    # layernorm: stream 0 has mean 1, variance (4+4+0+0)/4 = 2; stream 1 mean 2, variance (4+0+0+4)/4 = 2
    ln = Integrator(2, 4, "average", input="layernorm").features(h).flatten()
    want = torch.tensor([2.0, -2.0, 0.0, 0.0, -2.0, 0.0, 0.0, 2.0]) / 2.0 ** 0.5
    torch.testing.assert_close(ln, want, atol=1e-4, rtol=1e-4)
    unit = Integrator(2, 4, "average", input="unit").features(h).flatten()
    torch.testing.assert_close(unit, want / 8 ** 0.5, atol=1e-4, rtol=1e-4)  # divided by sqrt(n*D)
    assert abs(float(unit.norm()) - 1.0) < 1e-3  # L2 norm 1 per token
    # residual: S = S0 (fixed buffer) + W x + b with W, b zero at the start; bias form keeps S0 in b
    res = Integrator(2, 4, "average", form="residual")
    bias = Integrator(2, 4, "average", form="bias")
    assert res.proj.bias.tolist() == [0.0] * 4 and res.S0.tolist() == [0.5] * 4
    assert bias.proj.bias.tolist() == [0.5] * 4 and bias.S0.tolist() == [0.0] * 4
    torch.testing.assert_close(res(h), bias(h))
    torch.testing.assert_close(res(h)[0], 0.5 * (h[0] + h[1]))
    with torch.no_grad():
        res.proj.weight.zero_()
        res.proj.weight[1, 0] = 0.25  # S[0, 1] += 0.25 * x_0 (= 3.0)
    torch.testing.assert_close(res.scales(h).flatten(), torch.tensor([0.5, 1.25, 0.5, 0.5]))
    torch.testing.assert_close(res(h)[0], 0.5 * h[0] + 1.25 * h[1])
    assert "S0" not in res.state_dict()  # follows from the config; older checkpoints still load
    # weight decay pulls the residual form towards S0 (the static average), the bias form towards 0
    for integ, target in ((res, 0.5), (bias, 0.0)):
        opt = torch.optim.AdamW(integ.parameters(), lr=0.1, weight_decay=5.0)
        for _ in range(30):
            opt.zero_grad()
            (0.0 * integ(h).sum()).backward()  # no gradient signal: decay only
            opt.step()
        torch.testing.assert_close(integ.scales(h).flatten(), torch.full((4,), target), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="integrator input 'none'"):
        Integrator(2, 4, input="none")
    with pytest.raises(ValueError, match="integrator form"):
        Integrator(2, 4, form="gate")


def test_frozen_item_tower_ignores_the_adapters_and_full_loss_runs(ctx):
    lora = LMSeqRec(LMSeqRecConfig(init_adapter=ctx.extra["adapters"][0], item_tower="frozen", loss="full"), ctx)
    plain = LMSeqRec(LMSeqRecConfig(mode="frozen", head="none"), ctx)
    x = XCross(XCrossConfig(item_tower="frozen", loss="full"), ctx)
    with torch.no_grad():
        torch.testing.assert_close(lora.item_vectors(), plain.item_vectors())
        torch.testing.assert_close(x.item_vectors(), plain.item_vectors())
    loss = x.train().loss(toy_train_batch(ctx))
    loss.backward()
    assert torch.isfinite(loss) and x.integrators[0].proj.weight.grad is not None


def test_bad_inputs_are_named(ctx, tmp_path):
    with pytest.raises(ValueError, match="at least one source adapter"):
        XCross(XCrossConfig(), ModelContext(**{**ctx.__dict__, "extra": {**ctx.extra, "adapters": []}}))
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        LMSeqRec(LMSeqRecConfig(init_adapter=str(tmp_path)), ctx)
    with pytest.raises(ValueError, match="item fields"):
        LMSeqRec(LMSeqRecConfig(fields=["brand"]), ctx)
    with pytest.raises(ValueError, match="item_tower"):
        LMSeqRecConfig(mode="full", item_tower="frozen")


def test_engine_trains_and_reloads_lm_seqrec_and_xcross(tmp_path):
    """`mosaicrec train`'s engine: item texts reach the model through build_context; load_run
    rebuilds the model from config.yaml + model.safetensors with identical scores."""
    from tests.integration.toydata import random_loo_dataset

    from mosaicrec.config import ExperimentConfig
    from mosaicrec.evaluation.ranking import Evaluator
    from mosaicrec.training.engine import train_experiment
    from mosaicrec.training.run import load_run

    data_dir = random_loo_dataset(tmp_path / "data", n_users=12, n_items=10)
    ctx = context("bert")
    for name, extra in (("lm_seqrec", {"mode": "lora", "lora_r": 2}),
                        ("xcross", {"adapters": ctx.extra["adapters"], "item_tower": "frozen", "loss": "full"})):
        cfg = ExperimentConfig(
            name="toy", data={"source": "prepared", "path": str(data_dir)},
            model={"name": name, "backbone": example_backbone("bert"), "history_tokens": 24, **extra},
            train={"epochs": 1, "batch_size": 8, "lr": 1e-3, "max_len": 5, "accelerator": "cpu"},
            eval={"ks": [10]})
        res = train_experiment(cfg, tmp_path / name, tmp_path / "work", progress=False)
        assert 0.0 <= res.test["overall"]["ndcg@10"] <= 1.0
        run = load_run(tmp_path / name)
        ev = Evaluator(run.data, cfg.eval, "test", 5)
        again = ev.evaluate(run.model).metrics["overall"]["ndcg@10"]
        assert again == pytest.approx(res.test["overall"]["ndcg@10"], abs=1e-6)
