"""augment/caption against a real local chat-completions server, including a flaky one."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from chat_server import ChatServer

from mosaicrec.data.schema import PreparedData
from mosaicrec.features.augment.backends import GenerationConfig
from mosaicrec.features.augment.cache import read_cache
from mosaicrec.features.augment.prompts import load_template
from mosaicrec.features.augment.run import AugmentConfig, run_augment

N_TITLED = 7  # the fixture has 8 items, one without title and text


def http_cfg(server: ChatServer, **kw: object) -> AugmentConfig:
    llm = GenerationConfig(backend="openai", model="test-model", base_url=server.base_url, batch_size=3,
                           concurrency=2, max_retries=kw.pop("max_retries", 4), timeout=kw.pop("timeout", 5.0),
                           backoff=0.01)
    return AugmentConfig(llm=llm, progress=False, **kw)


def test_http_augment_writes_cache_and_rerun_skips(prepared: Path) -> None:
    data = PreparedData.load(prepared)
    with ChatServer() as server:
        rep = run_augment(data, http_cfg(server))
        assert (rep.n_generated, rep.n_cached, rep.failed) == (N_TITLED, 0, [])
        assert len(server.requests) == N_TITLED
        df = read_cache(rep.path)
        assert sorted(df["item_idx"].to_list()) == [1, 2, 3, 4, 5, 6, 8]
        assert set(df["model"].to_list()) == {"test-model"}
        assert set(df["prompt_hash"].to_list()) == {load_template("llm_emf").prompt_hash}
        first = df.filter(pl.col("item_idx") == 1).row(0, named=True)
        # echo server: "summary: " + first 6 words of the user prompt "Product title: Organic dark ..."
        assert first["text"] == "summary: Product title: Organic dark roast ground"
        assert first["completion_tokens"] == 7 and first["prompt_tokens"] > 20
        assert rep.completion_tokens == sum(df["completion_tokens"].to_list())
        # The prompt carried the item's title and domain (requests run concurrently: find item 1's).
        users = [r["messages"][-1]["content"] for r in server.requests]
        mine = [u for u in users if "Organic dark roast" in u]
        assert len(mine) == 1 and "Shop category: Food" in mine[0]

        again = run_augment(data, http_cfg(server))
        assert (again.n_generated, again.n_cached) == (0, N_TITLED)
        assert len(server.requests) == N_TITLED  # nothing was re-requested


def test_flaky_server_retries_and_loses_nothing(prepared: Path) -> None:
    """Every 3rd request errors and every 4th hangs past the timeout; retries finish the job."""
    data = PreparedData.load(prepared)

    def plan(n: int, body: dict) -> str | None:
        return "error" if n % 3 == 0 else "slow" if n % 4 == 1 else None

    with ChatServer(fail_plan=plan, slow_seconds=2.0) as server:
        rep = run_augment(data, http_cfg(server, timeout=0.5, max_retries=6))
        assert rep.failed == []
        assert rep.n_generated == N_TITLED
        assert len(server.requests) > N_TITLED  # retries happened
    df = read_cache(rep.path)
    assert sorted(df["item_idx"].to_list()) == [1, 2, 3, 4, 5, 6, 8]
    assert all(t.startswith("summary: ") for t in df["text"].to_list())


def test_failures_keep_finished_items_and_rerun_completes_them(prepared: Path) -> None:
    data = PreparedData.load(prepared)

    def always_fail_knives(n: int, body: dict) -> str | None:
        return "error" if "knife" in body["messages"][-1]["content"] else None

    with ChatServer(fail_plan=always_fail_knives) as server:
        rep = run_augment(data, http_cfg(server, max_retries=1))
    assert sorted(i for i, _ in rep.failed) == [4, 5]
    assert "HTTP 503" in rep.failed[0][1] and "gave up after 2 attempts" in rep.failed[0][1]
    kept = read_cache(rep.path)
    assert sorted(kept["item_idx"].to_list()) == [1, 2, 3, 6, 8]  # the others were written
    before = kept.sort("item_idx")

    with ChatServer() as healthy:
        rep2 = run_augment(data, http_cfg(healthy))
        assert rep2.n_generated == 2 and rep2.n_cached == 5 and rep2.failed == []
        assert len(healthy.requests) == 2
    after = read_cache(rep.path).sort("item_idx")
    assert after["item_idx"].to_list() == [1, 2, 3, 4, 5, 6, 8]
    # rows generated in the first run are untouched
    assert after.filter(pl.col("item_idx").is_in([1, 2, 3, 6, 8]))["text"].to_list() == before["text"].to_list()


def test_changed_content_or_prompt_is_regenerated(prepared: Path, tmp_path: Path) -> None:
    data = PreparedData.load(prepared)
    with ChatServer() as server:
        run_augment(data, http_cfg(server))
        items = pl.read_parquet(prepared / "items.parquet")
        items = items.with_columns(pl.when(pl.col("item_idx") == 2).then(pl.lit("Decaf espresso beans"))
                                   .otherwise(pl.col("title")).alias("title"))
        items.write_parquet(prepared / "items.parquet")
        rep = run_augment(PreparedData.load(prepared), http_cfg(server))
        assert rep.n_generated == 1 and "Decaf espresso" in server.requests[-1]["messages"][-1]["content"]
        custom = tmp_path / "short.yaml"
        custom.write_text("name: short\nuser: 'Describe {title} in a few words.'\nmax_new_tokens: 8\n")
        rep = run_augment(PreparedData.load(prepared), http_cfg(server, template=str(custom), name="llm_emf"))
        assert rep.n_generated == N_TITLED  # other prompt hash: everything regenerated


def test_openai_backend_needs_url_and_model(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = AugmentConfig(llm=GenerationConfig(backend="openai", model="m"), progress=False)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        run_augment(PreparedData.load(prepared), cfg)


def test_api_key_is_sent_from_environment(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mosaicrec.features.augment.backends import OpenAIChat, Prompt

    monkeypatch.setenv("MY_KEY", "sekret")
    seen = []
    with ChatServer() as server:
        backend = OpenAIChat(GenerationConfig(backend="openai", model="m", base_url=server.base_url,
                                              api_key_env="MY_KEY"))
        import httpx

        orig = httpx.Client.post

        def spy(self: httpx.Client, *a: object, **k: object) -> httpx.Response:
            seen.append(self.headers.get("authorization"))
            return orig(self, *a, **k)

        monkeypatch.setattr(httpx.Client, "post", spy)
        out = backend.generate([Prompt([{"role": "user", "content": "hello there"}])])
    assert seen == ["Bearer sekret"]
    assert out[0].text == "summary: hello there"


def test_kill_mid_run_loses_only_the_batch_in_flight(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mosaicrec.features.augment.backends import OpenAIChat

    data = PreparedData.load(prepared)
    orig = OpenAIChat.generate
    calls = []

    def dying(self: OpenAIChat, prompts: list) -> list:
        calls.append(len(prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return orig(self, prompts)

    with ChatServer() as server:
        monkeypatch.setattr(OpenAIChat, "generate", dying)
        with pytest.raises(KeyboardInterrupt):
            run_augment(data, http_cfg(server))  # batches of 3: the second one dies
        assert read_cache(prepared / "augment/llm_emf.parquet")["item_idx"].to_list() == [1, 2, 3]
        monkeypatch.setattr(OpenAIChat, "generate", orig)
        rep = run_augment(data, http_cfg(server))
    assert (rep.n_cached, rep.n_generated) == (3, 4)
    assert not list((prepared / "augment").glob(".*.tmp"))  # no half-written cache file left
