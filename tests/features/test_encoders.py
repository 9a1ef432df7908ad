"""Frozen encoders: real MiniLM and EfficientNet-Lite0 (offline packages), tiny random CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from tiny_models import tiny_clip

from mosaicrec.features.encoders import build_encoder
from mosaicrec.registry import ENCODERS


def photos() -> list[Image.Image]:
    return [Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee()),
            Image.fromarray(skdata.astronaut()), Image.fromarray(skdata.rocket())]


def test_registry_has_builtin_encoders() -> None:
    assert {"sentence", "minilm", "clip", "efficientnet"} <= set(ENCODERS.names())


def test_minilm_similar_products_are_closer(minilm) -> None:
    titles = ["Organic dark roast ground coffee, 12 oz",  # 0
              "Medium roast whole bean coffee",  # 1 similar to 0
              "Stainless steel chef knife, 8 inch",  # 2
              "Japanese santoku kitchen knife",  # 3 similar to 2
              "Green tea bags, 100 count",  # 4
              "Loose leaf jasmine green tea"]  # 5 similar to 4
    v = minilm.encode_texts(titles)  # [6, 384]
    assert v.shape == (6, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        others = [j for j in range(6) if j not in (a, b)]
        assert sim[a, b] > sim[a, others].max(), (titles[a], titles[b])
    # batched = one by one (the default precision: bfloat16 on CPUs with native bfloat16, where a
    # batch and a single text round their products differently)
    single = np.concatenate([minilm.encode_texts([t]) for t in titles])
    tol = 1e-5 if minilm.cfg.precision == "float32" else 4e-3
    np.testing.assert_allclose(single, v, atol=tol)
    assert (single * v).sum(1).min() > 0.9999


def test_efficientnet_real_photos() -> None:
    enc = build_encoder("efficientnet", batch_size=2)
    imgs = photos()
    v = enc.encode_images(imgs)  # [4, 1280]
    assert v.shape == (4, 1280) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    one = enc.encode_images(imgs[:1])
    np.testing.assert_allclose(one[0], v[0], atol=1e-4)
    # The weights and preprocessing are right: the ImageNet head sees a cat and an espresso.
    import torch

    with torch.no_grad():
        logits = enc.load()(enc.preprocess(imgs[:2]))  # [2, 1000]
    top5 = logits.topk(5, dim=1).indices.tolist()
    assert set(top5[0]) & set(range(281, 286)), top5[0]  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert 967 in top5[1], top5[1]  # espresso
    # different photos get clearly different vectors
    assert float(v[0] @ v[2]) < 0.9


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", projection_dim=24)


def test_tiny_clip_shared_space_and_batch_equals_single(clip_dir: Path) -> None:
    enc = build_encoder("clip", model=str(clip_dir), batch_size=3)
    assert enc.dim == 24 and enc.supports("text") and enc.supports("image")
    texts = ["organic coffee beans", "a chef knife", "green tea", "frying pan, non-stick"]
    t = enc.encode_texts(texts)  # [4, 24]
    i = enc.encode_images(photos())  # [4, 24]
    assert t.shape == (4, 24) and i.shape == (4, 24)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    cross = t @ i.T  # text-image similarities are defined: same space, same dimension
    assert cross.shape == (4, 4) and np.isfinite(cross).all()
    assert float(t[0] @ t[1]) < 0.999 and float(i[0] @ i[1]) < 0.999  # inputs are not collapsed
    t1 = np.concatenate([enc.encode_texts([x]) for x in texts])
    i1 = np.concatenate([enc.encode_images([x]) for x in photos()])
    np.testing.assert_allclose(t1, t, atol=1e-5)
    np.testing.assert_allclose(i1, i, atol=1e-5)
    assert enc.describe()["model"] == str(clip_dir)


def test_text_only_encoder_refuses_images(minilm) -> None:
    with pytest.raises(TypeError, match="no image tower"):
        minilm.encode_images(photos()[:1])


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_lm_encoder_pooling_batch_equals_single(tmp_path: Path, pooling: str) -> None:
    from tiny_models import tiny_sentence_model

    folder = tiny_sentence_model(tmp_path / "tiny-bert")
    enc = build_encoder("lm", model=str(folder), pooling=pooling, batch_size=4)
    texts = ["coffee", "a chef knife for the kitchen", "tea", "pan"]
    v = enc.encode_texts(texts)  # [4, 32]
    assert v.shape == (4, 32) and enc.dim == 32
    single = np.concatenate([enc.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(single, v, atol=1e-5)  # padding does not leak into the pooled vector
    assert enc.describe()["pooling"] == pooling


def test_token_batches_hand_example() -> None:
    from mosaicrec.features.encoders.base import token_batches

    # sorted longest first: 10 (idx 1), 7 (3), 5 (2), 3 (0), 1 (4); <= 2 texts and <= 12 padded tokens
    assert token_batches([3, 10, 5, 7, 1], 2, 12) == [[1], [3], [2, 0], [4]]
    assert token_batches([3, 10, 5, 7, 1], 3, None) == [[1, 3, 2], [0, 4]]
    assert token_batches([], 4, 100) == []


def test_minilm_bucketed_equals_sentence_transformers() -> None:
    """Length-bucketed batches (one long outlier among short titles) with the short-text attention
    give what SentenceTransformer.encode (its own sdpa attention) gives, in the input order;
    bfloat16 autocast stays within a cosine of 0.999 of float32 and is recorded in the manifest
    identity; one by one equals batched."""
    titles = [f"Stainless steel mixing bowl set {i}" for i in range(9)]
    titles.insert(4, "Deluxe " + " ".join(f"part{i}" for i in range(120)) + " kitchen organiser")
    titles.append("Chef knife " * 40)  # 81 tokens: above the short-text limit, the sdpa branch
    plain = build_encoder("minilm", precision="float32", attention="model")
    ref = plain.load().encode(titles, batch_size=32, normalize_embeddings=True)  # [11, 384]
    assert plain.load()[0].auto_model.config._attn_implementation == "sdpa"
    enc = build_encoder("minilm", batch_size=4, max_batch_tokens=64, precision="float32")
    assert enc.load()[0].auto_model.config._attn_implementation == "mosaicrec_text"
    got = enc.encode_texts(titles)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([enc.encode_texts([t]) for t in titles]), got, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, 384)
    bf16 = build_encoder("minilm", batch_size=4, precision="bfloat16")
    cos = (bf16.encode_texts(titles) * ref).sum(1)
    assert cos.min() > 0.999, cos
    assert "precision" not in enc.describe() and bf16.describe()["precision"] == "bfloat16"


def test_auto_precision_is_bfloat16_only_for_sentence_encoders_on_bfloat16_cpus(monkeypatch, clip_dir: Path) -> None:
    from mosaicrec.features.encoders import base

    monkeypatch.setattr(base, "cpu_has_native_bfloat16", lambda: True)
    assert build_encoder("minilm").cfg.precision == "bfloat16"
    assert build_encoder("sentence", model="x").cfg.precision == "bfloat16"
    assert build_encoder("minilm", precision="float32").cfg.precision == "float32"
    assert build_encoder("minilm", device="cuda").cfg.precision == "float32"
    assert build_encoder("clip", model=str(clip_dir)).cfg.precision == "float32"
    assert build_encoder("lm").cfg.precision == "float32"
    monkeypatch.setattr(base, "cpu_has_native_bfloat16", lambda: False)
    assert build_encoder("minilm").cfg.precision == "float32"
    assert "precision" not in build_encoder("minilm").describe()  # float32 keeps its manifest identity


def test_bfloat16_precision_applies_to_clip_and_lm(clip_dir: Path, tmp_path: Path) -> None:
    """precision=bfloat16 runs every encoder's forward under autocast: close to float32, not equal."""
    from tiny_models import tiny_sentence_model

    texts = ["organic coffee beans", "a chef knife", "green tea"]
    folder = tiny_sentence_model(tmp_path / "tiny-bert")
    for name, model in (("clip", clip_dir), ("lm", folder)):
        f32 = build_encoder(name, model=str(model)).encode_texts(texts)
        b16 = build_encoder(name, model=str(model), precision="bfloat16").encode_texts(texts)
        cos = (f32 * b16).sum(1)
        assert b16.dtype == np.float32 and cos.min() > 0.99, (name, cos)
        assert not np.array_equal(f32, b16), name  # bfloat16 really ran
    img32 = build_encoder("clip", model=str(clip_dir)).encode_images(photos()[:2])
    img16 = build_encoder("clip", model=str(clip_dir), precision="bfloat16").encode_images(photos()[:2])
    assert (img32 * img16).sum(1).min() > 0.99 and not np.array_equal(img32, img16)
