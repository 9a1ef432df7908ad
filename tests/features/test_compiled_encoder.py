"""torch.compile of the sentence encoders' batched forward (encoders/compiled.py): when it is used,
that it matches eager on real MiniLM titles, and that a missing compiler or a failing compilation
falls back to eager with a warning instead of failing."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest

from mosaicrec.features.encoders import build_encoder, compiled

SIMILAR = ["Organic dark roast ground coffee, 12 oz",  # 0
           "Medium roast whole bean coffee",  # 1 similar to 0
           "Stainless steel chef knife, 8 inch",  # 2
           "Japanese santoku kitchen knife",  # 3 similar to 2
           "Green tea bags, 100 count",  # 4
           "Loose leaf jasmine green tea"]  # 5 similar to 4


def test_compile_option_rule(monkeypatch) -> None:
    """off/on force it; auto compiles only jobs of >= AUTO_MIN_TEXTS texts (one call or a planned job) on the CPU."""
    monkeypatch.setattr(compiled, "AUTO_MIN_TEXTS", 1000)
    auto = build_encoder("minilm")
    assert auto.cfg.compile == "auto"
    assert not auto.compile_wanted(999) and auto.compile_wanted(1000)
    auto.plan(5000)  # the embed stage announces a large job: its 512-item chunks compile
    assert auto.compile_wanted(512)
    assert not build_encoder("minilm", device="cuda").compile_wanted(10**6)
    assert build_encoder("minilm", compile="on").compile_wanted(3)
    assert not build_encoder("minilm", compile="off").compile_wanted(10**6)


def test_no_compiler_falls_back_to_eager_with_a_warning(minilm, monkeypatch, caplog) -> None:
    monkeypatch.setattr(compiled, "compiler_problem", lambda: "no usable C++ compiler for torch inductor (test)")
    enc = build_encoder("minilm", compile="on", batch_size=32)
    with caplog.at_level(logging.WARNING, logger="mosaicrec.features"):
        got = enc.encode_texts(SIMILAR)  # [6, 384]
    np.testing.assert_array_equal(got, minilm.encode_texts(SIMILAR))  # eager: the same numbers exactly
    assert not enc._compiled.active and "C++ compiler" in enc._compiled.fallback_reason
    assert "torch.compile disabled, running eager" in caplog.text and "C++ compiler" in caplog.text


def test_failing_compilation_falls_back_to_eager(minilm, monkeypatch, caplog) -> None:
    """A compile error raised on the first compiled call: that batch is re-run eagerly, later ones stay eager."""
    import torch

    def broken(module, **kwargs):
        def fn(feats):
            raise RuntimeError("C++ compile error: cc1plus: out of memory\ndetails...")
        return fn

    monkeypatch.setattr(compiled, "compiler_problem", lambda: None)
    monkeypatch.setattr(torch, "compile", broken)
    enc = build_encoder("minilm", compile="on", batch_size=32)
    with caplog.at_level(logging.WARNING, logger="mosaicrec.features"):
        got = enc.encode_texts(SIMILAR)
        again = enc.encode_texts(SIMILAR[:3])
    np.testing.assert_array_equal(got, minilm.encode_texts(SIMILAR))
    np.testing.assert_array_equal(again, got[:3])
    assert enc._compiled.fallback_reason == "RuntimeError: C++ compile error: cc1plus: out of memory"
    assert caplog.text.count("torch.compile disabled") == 1


def test_compiled_minilm_equals_eager_on_real_titles(minilm, shared_data) -> None:
    """Real compilation (inductor, C++): 300 food-kitchen titles within cosine 0.999 of eager (same
    precision), similar titles closer, one-text calls eager (bit-equal to the eager encoder)."""
    if compiled.compiler_problem():
        pytest.skip("no C++ compiler: the fallback tests above cover this machine")
    with open(shared_data / "food-kitchen" / "items.tsv", newline="") as f:
        titles = [r["title"] for r in csv.DictReader(f, delimiter="\t") if r.get("title")][:300]
    enc = build_encoder("minilm", compile="on", batch_size=32)
    assert enc.cfg.precision == minilm.cfg.precision
    got = enc.encode_texts(titles)  # [300, 384]
    assert enc._compiled.active and enc._compiled.compile_seconds is not None, enc._compiled.fallback_reason
    ref = minilm.encode_texts(titles)
    cos = (got * ref).sum(1)  # both L2-normalised
    assert cos.min() > 0.999, cos.min()
    v = enc.encode_texts(SIMILAR)
    sim = v @ v.T
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        others = [j for j in range(6) if j not in (a, b)]
        assert sim[a, b] > sim[a, others].max(), (SIMILAR[a], SIMILAR[b])
    np.testing.assert_array_equal(enc.encode_texts([titles[7]]), minilm.encode_texts([titles[7]]))


def test_embed_command_compile_flag() -> None:
    import argparse

    from mosaicrec.commands.embed import add_arguments, build_config

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert build_config(p.parse_args(["prep"]), "title").encoder_config.compile == "auto"
    assert build_config(p.parse_args(["prep", "--compile", "on"]), "title").encoder_config.compile == "on"
    with pytest.raises(SystemExit):
        p.parse_args(["prep", "--compile", "sometimes"])
