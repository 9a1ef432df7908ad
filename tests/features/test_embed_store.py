"""embed + feature store machinery with a small deterministic test encoder (no model load)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
from prepared_data import write_prepared

from mosaicrec.data.schema import PreparedData
from mosaicrec.features.embed import EmbedConfig, run_embed
from mosaicrec.features.encoders.base import Encoder, EncoderConfig
from mosaicrec.features.fields import field_inputs, parse_field
from mosaicrec.features.store import FeatureError, load_feature, parse_feature_specs, resolve_features
from mosaicrec.registry import ENCODERS


class CountingEncoder(Encoder):
    """Vector = [len(text), number of spaces, first char code, 1]; counts encode calls."""

    modalities: ClassVar = ("text", "image")
    calls: ClassVar[list[int]] = []
    fail_after: ClassVar[int | None] = None
    delay: ClassVar[float] = 0.0

    def describe(self) -> dict:
        return {"model": "counting", "revision": "1"}

    @property
    def dim(self) -> int:
        return 4

    def _tick(self, n: int) -> None:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls.append(n)
        time.sleep(self.delay)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self._tick(len(texts))
        return np.array([[len(t), t.count(" "), ord(t[0]), 1] for t in texts], dtype=np.float32)

    def encode_images(self, images: list) -> np.ndarray:
        self._tick(len(images))
        return np.array([[img.width, img.height, np.asarray(img).mean(), 1] for img in images], np.float32)


if "counting-test" not in ENCODERS:
    ENCODERS.register("counting-test")(CountingEncoder)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CountingEncoder.calls = []
    CountingEncoder.fail_after = None
    CountingEncoder.delay = 0.0


def cfg(**kw: object) -> EmbedConfig:
    return EmbedConfig(encoder="counting-test", progress=False, **kw)


def test_field_parsing_and_joining(prepared: Path) -> None:
    assert parse_field("title+text") == ["title", "text"]
    with pytest.raises(ValueError, match="unknown part 'brand'"):
        parse_field("title+brand")
    with pytest.raises(ValueError, match="cannot be joined"):
        parse_field("image+title")
    data = PreparedData.load(prepared)
    inp = field_inputs(data, "title+text", joiner=" | ")
    assert inp.values[0] == "Organic dark roast ground coffee, 12 oz bag | Food product"
    assert inp.values[6] is None  # item 7 has neither title nor text
    tmpl = field_inputs(data, "title+text", template="{text}: {title}")
    assert tmpl.values[3] == "Kitchen product: Stainless steel chef knife, 8 inch"
    assert field_inputs(data, "title").input_hash != inp.input_hash


def test_embed_layout_rows_masks_manifest(prepared: Path) -> None:
    data = PreparedData.load(prepared)
    res = run_embed(data, cfg(chunk_size=3))
    arr, mask = load_feature(prepared / "features", "counting-test", "title", data)
    assert isinstance(arr, np.memmap) and arr.shape == (9, 4) and arr.dtype == np.float32
    assert not arr[0].any() and not mask[0]
    title1 = "Organic dark roast ground coffee, 12 oz bag"
    np.testing.assert_array_equal(arr[1], [len(title1), 7, ord("O"), 1])
    assert mask.tolist() == [False, True, True, True, True, True, True, False, True]
    assert not arr[7].any()  # missing title -> zero row
    assert res.n_missing == 1 and CountingEncoder.calls == [3, 3, 1]  # chunks of 3, item 7 skipped
    man = json.loads((prepared / "features/counting-test/manifest.json").read_text())
    entry = man["fields"]["title"]
    assert entry["dimension"] == 4 and entry["dtype"] == "float32" and entry["n_missing"] == 1
    assert entry["model"] == {"model": "counting", "revision": "1"} and entry["input_hash"]
    assert not list((prepared / "features/counting-test").glob(".*chunks*"))  # shards cleaned up


def test_up_to_date_is_skipped_and_float16_option(prepared: Path) -> None:
    data = PreparedData.load(prepared)
    run_embed(data, cfg())
    n = len(CountingEncoder.calls)
    assert run_embed(data, cfg()).skipped and len(CountingEncoder.calls) == n
    res = run_embed(data, cfg(dtype="float16"))  # other dtype: recomputed
    assert not res.skipped
    arr, _ = load_feature(prepared / "features", "counting-test", "title", data)
    assert arr.dtype == np.float16


def test_changed_items_make_the_feature_stale(prepared: Path) -> None:
    data = PreparedData.load(prepared)
    run_embed(data, cfg())
    items = pl.read_parquet(prepared / "items.parquet").with_columns(
        pl.when(pl.col("item_idx") == 3).then(pl.lit("Black tea")).otherwise(pl.col("title")).alias("title"))
    items.write_parquet(prepared / "items.parquet")
    changed = PreparedData.load(prepared)
    with pytest.raises(FeatureError, match=r"manifest.json: field 'title' was computed from other item content"):
        load_feature(prepared / "features", "counting-test", "title", changed)
    # without data the array still loads (no check requested)
    assert load_feature(prepared / "features", "counting-test", "title")[0].shape == (9, 4)
    # resolve_features re-embeds instead of silently reusing
    feats, _ = resolve_features({"t": {"encoder": "counting-test", "field": "title"}}, changed, prepared)
    assert feats["t"][3, 0] == len("Black tea")


def test_two_runs_embedding_the_same_feature_at_once_share_one_result(prepared: Path) -> None:
    # Two benchmark seeds started together on one work dir used to race: both encoded the same
    # chunks, the first merged and removed the chunk folder, the second failed at merge time.
    data = PreparedData.load(prepared)
    CountingEncoder.delay = 0.05  # slow chunks so that the two runs overlap
    results: list[object] = []

    def embed() -> None:
        try:
            results.append(run_embed(data, cfg(chunk_size=2)))
        except Exception as err:  # collected: an exception in a thread would not fail the test
            results.append(err)

    threads = [threading.Thread(target=embed) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.skipped for r in results) == [False, True]  # type: ignore[attr-defined]
    assert sum(CountingEncoder.calls) == 7  # the 7 items with a title, encoded once
    arr, _ = load_feature(prepared / "features", "counting-test", "title", data)
    assert arr.shape == (9, 4) and arr[1].any()


def test_missing_feature_error_names_file(prepared: Path) -> None:
    with pytest.raises(FeatureError, match=r"features/minilm/title.npy: feature not found"):
        load_feature(prepared / "features", "minilm", "title")


def test_interrupted_embed_resumes_from_finished_chunks(prepared: Path) -> None:
    data = PreparedData.load(prepared)
    CountingEncoder.fail_after = 2  # the third chunk "dies"
    with pytest.raises(KeyboardInterrupt):
        run_embed(data, cfg(chunk_size=3))
    assert not (prepared / "features/counting-test/title.npy").exists()  # no half result
    assert len(list((prepared / "features/counting-test").glob(".title.chunks-*/chunk-*.npz"))) == 2
    CountingEncoder.fail_after = None
    CountingEncoder.calls = []
    run_embed(data, cfg(chunk_size=3))
    assert CountingEncoder.calls == [1]  # only the last chunk (item 8) was encoded again
    resumed, _ = load_feature(prepared / "features", "counting-test", "title", data)
    fresh_dir = write_prepared(prepared.parent / "fresh")
    run_embed(PreparedData.load(fresh_dir), cfg(chunk_size=3))
    fresh, _ = load_feature(fresh_dir / "features", "counting-test", "title")
    np.testing.assert_array_equal(np.asarray(resumed), np.asarray(fresh))


def test_images_missing_broken_and_unreachable_urls(tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data as skdata

    root = tmp_path / "p"
    root.mkdir()
    (root / "img").mkdir()
    Image.fromarray(skdata.chelsea()).save(root / "img/cat.png")
    Image.fromarray(skdata.coffee()).save(tmp_path / "coffee.jpg")
    (root / "img/broken.jpg").write_bytes(b"not an image at all")
    from chat_server import free_port

    dead = f"http://127.0.0.1:{free_port()}/x.jpg"  # nothing listens there
    images = ["img/cat.png", str(tmp_path / "coffee.jpg"), "img/broken.jpg", "img/nope.png", dead,
              None, "img/cat.png", None]
    write_prepared(root, images=images)
    data = PreparedData.load(root)
    res = run_embed(data, cfg(field="image", chunk_size=4))
    arr, mask = load_feature(root / "features", "counting-test", "image", data)
    assert mask.tolist() == [False, True, True, False, False, False, False, True, False]
    assert arr[1, 0] == 451 and arr[2, 0] == 600  # widths of chelsea / coffee
    np.testing.assert_array_equal(arr[1], arr[7])  # same file, same vector
    assert not arr[[3, 4, 5, 6, 8]].any()
    rep = res.image_report
    assert rep is not None and rep.n_ok == 3 and len(rep.missing) == 3
    reasons = {ref: why for _, ref, why in rep.missing}
    assert reasons["img/broken.jpg"] == "not a readable image"
    assert reasons["img/nope.png"] == "file not found"
    assert reasons[dead].startswith("download failed (ConnectError")
    text = rep.summary()
    assert "3 missing or broken (1 of them URLs)" in text and "item 5" in text
    man = json.loads((root / "features/counting-test/manifest.json").read_text())
    assert man["fields"]["image"]["image_report"]["n_missing"] == 3


def test_feature_spec_validation() -> None:
    specs = parse_feature_specs({"text": {"encoder": "minilm", "field": "title"}, "img": None})
    assert specs["text"].field == "title" and specs["img"].encoder == "minilm"
    with pytest.raises(ValueError, match="features.text"):
        parse_feature_specs({"text": {"encoder": "minilm", "feild": "title"}})


def test_embed_augmented_text_field(prepared: Path) -> None:
    from mosaicrec.features.augment.cache import append_rows, cache_path, item_content_hashes

    data = PreparedData.load(prepared)
    hashes = item_content_hashes(data)
    rows = [{"item_idx": i, "content_hash": hashes[i - 1], "prompt_hash": "p", "model": "m",
             "text": f"generated {i}", "prompt_tokens": 1, "completion_tokens": 2, "kind": "text"}
            for i in (1, 2, 5)]
    rows[1]["content_hash"] = "stale"
    append_rows(cache_path(prepared, "llm_emf"), rows)
    res = run_embed(data, cfg(field="augment:llm_emf"))
    arr, mask = load_feature(prepared / "features", "counting-test", "augment:llm_emf", data)
    assert (prepared / "features/counting-test/augment-llm_emf.npy").exists()
    assert mask.nonzero()[0].tolist() == [1, 5]  # item 2's row is stale, the rest never generated
    assert arr[5, 0] == len("generated 5")
    assert any("1 rows are stale" in n for n in res.notes)


def test_encoder_config_is_strict() -> None:
    with pytest.raises(ValueError):
        EncoderConfig(modle="x")


def test_url_images_are_downloaded_once_into_the_cache(tmp_path: Path) -> None:
    import http.server
    import threading

    from PIL import Image
    from skimage import data as skdata

    served = tmp_path / "www"
    served.mkdir()
    Image.fromarray(skdata.coffee()).save(served / "coffee.png")
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(served), **k)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *a: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/coffee.png"
        root = write_prepared(tmp_path / "p", images=[url, url.replace("coffee", "nothere"), None, None, None, None, None, url])
        data = PreparedData.load(root)
        res = run_embed(data, cfg(field="image"))
        arr, mask = load_feature(root / "features", "counting-test", "image", data)
        assert mask.nonzero()[0].tolist() == [1, 8] and arr[1, 0] == 600
        assert res.image_report is not None and "HTTPStatusError" in res.image_report.missing[0][2]
        assert len(list((root / "image_cache").iterdir())) == 1
        run_embed(data, cfg(field="image"), force=True)
        assert hits.count("/coffee.png") == 1  # the second run read the disk cache
    finally:
        httpd.shutdown()
