"""The recommendation service behind the HTTP API, independent of the web framework.

:class:`Service` owns a trained model, the prepared items table and the item index. Requests
are first *resolved* (raw ids -> item indexes, ordering, truncation; cheap, on the event loop;
bad input raises :class:`RequestError`), then answered in batches by :meth:`Service.answer`
(one ``model.user_repr`` forward for the whole batch, then one index search per target domain).

Ranking is by ``user_repr · item_vectors`` through the faiss index. At start-up the service
checks on a few real histories that this equals ``model.score``; a model that overrides
``score`` with something else is served by ``model.score`` directly (``scoring == "model"``).
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mosaicrec.config import ExperimentConfig, StrictModel
from mosaicrec.data.schema import PreparedData
from mosaicrec.models.base import Recommender
from mosaicrec.serving.index import GLOBAL, IndexConfig, ItemIndex, int_ids
from mosaicrec.serving.schemas import HistoryItem, RecommendRequest

log = logging.getLogger("mosaicrec.serving")


class ServeConfig(StrictModel):
    max_batch: int = Field(64, ge=1, description="requests per forward pass")
    max_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits to fill")
    batching: bool = Field(True, description="False: one forward per request")
    batch_policy: Literal["fill", "recent", "pipeline"] = Field(
        "recent", description="how the worker forms a batch once its first request is queued: 'fill' waits up to "
                              "max_wait_ms for max_batch requests; 'recent' stops waiting as soon as as many requests "
                              "are queued as were in flight recently (at most max_batch); 'pipeline' caps a batch at "
                              "half the recent concurrency so that one half computes while the other is parsed and "
                              "answered (docs/serving.md)")
    switch_interval_ms: float | None = Field(
        None, gt=0, description="the server's sys.setswitchinterval in ms (None: Python's 5 ms): how long a thread "
                                "waiting for the GIL (the batch worker after each torch op) waits at most")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request body size cap (413 above)")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = leave as is")
    padding: Literal["auto", "max_len", "longest"] = Field(
        "auto", description="pad batches to max_len (as the evaluator), to the longest history in the batch, "
                            "or auto: longest when a start-up check shows the model's output does not change")
    index: IndexConfig = Field(default_factory=IndexConfig)
    bucket_forward_cost: float = Field(
        150.0, ge=0, description="padding 'longest': the fixed cost of one forward pass, in padded history "
                                 "positions, when a micro-batch is split into forward passes by history length")
    bucket_attention_span: float = Field(
        350.0, gt=0, description="padding 'longest': a padded row of length L costs L * (1 + L / span) "
                                 "positions (the attention part grows with L); see length_buckets")
    fast_path: bool = Field(True, description="answer POST /recommend in a lean ASGI handler (same checks and "
                                              "answers) instead of FastAPI's routing; False = the FastAPI route")
    gc_freeze: bool = Field(True, description="at start-up, move every object loaded so far (model, tables, "
                                              "libraries) out of the garbage collector's reach (gc.freeze), "
                                              "so that full collections under load stay short")


class RequestError(ValueError):
    """A request that cannot be answered as asked; ``status`` is the HTTP status (422, 501)."""

    def __init__(self, message: str, status: int = 422, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@dataclass
class Query:
    """A resolved request, ready for the model."""

    items: np.ndarray | list[int]  # [n] int64 item indexes, oldest first, n <= max_len (domains: Service.item_domain)
    target_domain: int | None
    k: int
    exclude: np.ndarray | set[int]  # item indexes never recommended ([m] int64 from resolve; repeats allowed)
    explain: bool
    truncated: int = 0
    warnings: list[str] = field(default_factory=list)
    user: int = 0  # user index (collaborative-filtering models score known users)


@dataclass
class Answer:
    ids: list[int]
    scores: list[float]
    explain: dict[str, Any] | None = None


class Service:
    def __init__(self, model: Recommender, data: PreparedData, max_len: int,
                 cfg: ServeConfig | None = None, experiment: ExperimentConfig | None = None,
                 run_dir: Path | None = None, model_name: str | None = None) -> None:
        import torch

        self.cfg = cfg or ServeConfig()
        if self.cfg.torch_threads:
            torch.set_num_threads(self.cfg.torch_threads)
        self.model = model.eval()
        self.data = data
        self.max_len = int(max_len)
        self.experiment = experiment
        self.run_dir = run_dir
        self.model_name = model_name or (experiment.model["name"] if experiment else type(model).__name__)
        self.domains = list(data.domains)
        self._lock = threading.Lock()  # guards the index and the item tables against /items
        self._users: dict[str, int] | None = None  # raw user id -> user index, read on first use
        self._presented: list[dict[str, Any]] = []  # present()'s item part per item index, built on first use
        self._load_items()
        with torch.inference_mode():
            vectors = model.item_vectors().detach().float().cpu().numpy()  # [N+1, D]
        if vectors.shape[0] != data.n_items + 1:
            raise ValueError(f"model has {vectors.shape[0] - 1} item vectors but the data has "
                             f"{data.n_items} items ({data.root}): the run and the data do not match")
        self.index = ItemIndex(vectors, data.item_domain, self.cfg.index)
        self.padding = self.cfg.padding if self.cfg.padding != "auto" else self._check_padding()
        self.scoring = self._check_scoring(vectors)
        self.repr_fn = self._check_serve_repr()

    @classmethod
    def from_run(cls, run_dir: str | Path, cfg: ServeConfig | None = None) -> Service:
        from mosaicrec.serving.rundir import load_checked_run

        run = load_checked_run(run_dir)
        return cls(run.model, run.data, run.cfg.train.max_len, cfg, run.cfg, Path(run.run_dir))

    # ----------------------------------------------------------------- item tables
    def _load_items(self) -> None:
        items = self.data.items
        self.raw_ids: list[str] = [""] + [str(x) for x in items["raw_id"].to_list()]
        self.titles: list[str | None] = [None] + items["title"].to_list()
        self.images: list[str | None] = [None] + items["image"].to_list()
        self.item_domain: list[int] = [-1] + [int(d) for d in items["domain"].to_list()]
        self.lower_titles = [(t or "").lower() for t in self.titles]
        self.by_raw: dict[str, list[int]] = {}
        for idx in range(1, len(self.raw_ids)):
            self.by_raw.setdefault(self.raw_ids[idx], []).append(idx)
        self.n_model_items = len(self.raw_ids) - 1  # items the model has ids for
        # ids of exactly one item the model knows (the common case, resolved without checks)
        self.unique_raw = {r: c[0] for r, c in self.by_raw.items() if len(c) == 1}

    @property
    def n_items(self) -> int:
        return len(self.raw_ids) - 1

    def domain_index(self, name: str) -> int:
        try:
            return self.domains.index(name)
        except ValueError:
            raise RequestError(f"unknown domain {name!r}; known: {self.domains}", field="domain") from None

    def image_url(self, idx: int) -> str | None:
        img = self.images[idx]
        if not img:
            return None
        return img if img.startswith(("http://", "https://")) else f"/images/{idx}"

    def image_path(self, idx: int) -> Path | None:
        """Local file of item ``idx``'s image (relative paths are under the data folder)."""
        if not (0 < idx <= self.n_items) or not self.images[idx] or self.image_url(idx) != f"/images/{idx}":
            return None
        p = Path(str(self.images[idx]))
        return p if p.is_absolute() else Path(self.data.root) / p

    def search_titles(self, q: str, limit: int = 20, domain: str | None = None) -> list[int]:
        q = q.strip().lower()
        d = self.domain_index(domain) if domain else None
        out = []
        for idx, t in enumerate(self.lower_titles):
            if idx and q in t and (d is None or self.item_domain[idx] == d):
                out.append(idx)
                if len(out) >= limit:
                    break
        return out

    # ----------------------------------------------------------------- resolving requests
    def _lookup(self, raw: str, domain: str | None) -> int | None:
        cands = self.by_raw.get(raw, [])
        if domain is not None:
            d = self.domain_index(domain)
            cands = [c for c in cands if self.item_domain[c] == d]
        if len(cands) > 1:
            names = sorted({self.domains[self.item_domain[c]] for c in cands})
            raise RequestError(f"item id {raw!r} exists in domains {names}: give its domain",
                               field="history", ambiguous_ids=[raw])
        return cands[0] if cands else None

    def _fast_ids(self, entries: list[Any]) -> np.ndarray | None:
        """Item indexes [n] int64 when every entry is a plain id of exactly one catalogue item, else None.

        The dict lookups write straight into an int64 array (no list of Python ints; a miss gives
        0, which no item has): the array is the model's history and the excluded items as is."""
        try:  # strings look up directly; numbers and HistoryItem objects take the slow path
            ids = np.fromiter(map(self.unique_raw.get, entries, itertools.repeat(0)), dtype=np.int64,
                              count=len(entries))  # [n]
        except TypeError:  # unhashable HistoryItem
            return None
        return ids if ids.all() else None

    def _slow_ids(self, entries: list[Any]) -> tuple[list[int], list[str], list[str]]:
        """(known item indexes, unknown raw ids, ids of items added at run time)."""
        ids, unknown, unusable = [], [], []
        for e in entries:
            raw, dom = (str(e.id), e.domain) if isinstance(e, HistoryItem) else (str(e), None)
            idx = self._lookup(raw, dom)
            if idx is None:
                unknown.append(raw)
            elif idx > self.n_model_items:
                unusable.append(raw)
            else:
                ids.append(idx)
        return ids, unknown, unusable

    def resolve(self, req: RecommendRequest) -> Query:
        entries: list[Any] = req.history
        fast = self._fast_ids(entries) if entries else _NO_IDS  # None unless every entry is a plain known id
        if fast is None:  # HistoryItem entries: with timestamps for all or none
            with_ts = [isinstance(e, HistoryItem) and e.ts is not None for e in entries]
            if any(with_ts) and not all(with_ts):
                missing = [i for i, t in enumerate(with_ts) if not t][:10]
                raise RequestError(f"history: give a ts for every item or for none (missing at positions {missing})",
                                   field="history")
            if all(with_ts):
                entries = sorted(entries, key=lambda e: e.ts)  # stable: equal ts keep request order
        unknown: list[str]
        unusable: list[str]
        if fast is not None:
            ids, unknown, unusable = fast, [], []
        else:
            known, unknown, unusable = self._slow_ids(entries)
            ids = np.asarray(known, dtype=np.int64)  # [n]
        user = self._user(req)
        warnings = []
        if unknown and not req.ignore_unknown:
            raise RequestError(f"unknown item id(s): {unknown[:20]}" + (" ..." if len(unknown) > 20 else ""),
                               field="history", unknown_ids=unknown)
        if unknown:
            warnings.append(f"ignored {len(unknown)} unknown item id(s): {unknown[:20]}")
        if unusable:
            warnings.append(f"ignored {len(unusable)} item(s) added at run time (the model has no history "
                            f"embedding for them): {unusable[:20]}")
        if not len(ids) and not self.is_cf:  # sequential models recommend from the history
            raise RequestError("history: no known item left to recommend from", field="history")
        truncated = max(0, len(ids) - self.max_len)
        if truncated:
            warnings.append(f"history has {len(ids)} items, longer than the model's max_len {self.max_len}: "
                            f"the {truncated} oldest were dropped")
        exclude = ids if req.exclude_seen else _NO_IDS  # the whole history, before truncation
        if user is not None and req.exclude_seen and self.is_cf:  # the items the model learnt the user from
            learnt = self.data.item[self.data.indptr[user]:self.data.indptr[user + 1]]
            exclude = np.concatenate([exclude, np.asarray(learnt, dtype=np.int64)])
        ids = ids[-self.max_len:]  # a view
        target = self.domain_index(req.domain) if req.domain is not None else None
        return Query(items=ids, target_domain=target, k=req.k,
                     exclude=exclude, explain=req.explain, truncated=truncated, warnings=warnings,
                     user=user or 0)

    @property
    def is_cf(self) -> bool:
        return getattr(self.model, "kind", "sequential") == "cf"

    def _user(self, req: RecommendRequest) -> int | None:
        """The user index of ``req.user``; collaborative-filtering models require one."""
        if req.user is None:
            if self.is_cf:
                raise RequestError(f"model {self.model_name!r} is a collaborative-filtering model: it scores "
                                   "users seen in training, not histories; give 'user' (a raw user id)", field="user")
            return None
        if self._users is None:
            import polars as pl

            path = Path(self.data.root) / "users.parquet"
            if not path.exists():
                raise RequestError(f"{path} not found: users cannot be looked up", status=501, field="user")
            users = pl.read_parquet(path)
            self._users = {str(r): int(i) for r, i in zip(users["raw_id"].to_list(), users["user_idx"].to_list(),
                                                          strict=True)}
        idx = self._users.get(str(req.user))
        if idx is None:
            raise RequestError(f"unknown user id {str(req.user)!r}", field="user", unknown_user=str(req.user))
        return idx

    # ----------------------------------------------------------------- answering
    def make_batch(self, queries: list[Query], padding: str | None = None) -> Any:
        """A left-padded :class:`SeqBatch` [B, L] for the resolved queries.

        L = max_len, or the longest history of the batch when ``padding`` (default: the
        service's) is "longest".
        """
        import torch

        from mosaicrec.data.batches import SeqBatch

        b = len(queries)
        longest = (padding or getattr(self, "padding", "max_len")) == "longest"
        length = max(1, *(len(q.items) for q in queries)) if longest else self.max_len
        items = np.zeros((b, length), dtype=np.int64)  # [B, L]
        for r, q in enumerate(queries):
            if len(q.items):
                items[r, length - len(q.items):] = q.items
        doms = self._domain_of_items()[items]  # [B, L]; padding (item 0) -> 0
        tdom = [q.target_domain if q.target_domain is not None else (int(doms[r, -1]) if len(q.items) else 0)
                for r, q in enumerate(queries)]
        return SeqBatch(items=torch.from_numpy(items), domains=torch.from_numpy(doms),
                        lengths=torch.tensor([len(q.items) for q in queries], dtype=torch.int64),
                        users=torch.tensor([q.user for q in queries], dtype=torch.int64),
                        targets=torch.zeros(b, dtype=torch.int64),
                        target_domains=torch.tensor(tdom, dtype=torch.int64))

    def _domain_of_items(self) -> np.ndarray:
        """[N+1] int64: the domain of each item index, 0 for the padding index 0 (cached; rebuilt
        when items were added)."""
        arr = getattr(self, "_domain_arr", None)
        if arr is None or len(arr) != len(self.item_domain):
            arr = np.asarray(self.item_domain, dtype=np.int64)
            arr[0] = 0
            self._domain_arr = arr
        return arr

    def answer(self, queries: list[Query]) -> list[Answer]:
        """Forward passes for ``queries`` (one per length bucket), then one index search per domain."""
        import torch

        if self.scoring == "model":
            with torch.inference_mode():
                return self._answer_by_score(queries, self.make_batch(queries))
        reprs: np.ndarray | None = None
        explained: list[dict[str, Any] | None] = [None] * len(queries)
        with torch.inference_mode():
            for rows in self.buckets(queries):
                sub = [queries[r] for r in rows]
                batch = self.make_batch(sub)
                rep = self.repr_fn(batch).float().cpu().numpy()  # [b, D]
                if reprs is None:
                    reprs = np.zeros((len(queries), rep.shape[1]), dtype=np.float32)  # [B, D]
                reprs[rows] = rep
                if any(q.explain for q in sub):
                    weights = self._explain(batch)
                    for j, r in enumerate(rows):
                        explained[r] = _row(weights, j, len(rows)) if queries[r].explain else None
        assert reprs is not None
        answers: list[Answer | None] = [None] * len(queries)
        groups: dict[int | None, list[int]] = {}
        for r, q in enumerate(queries):
            groups.setdefault(q.target_domain, []).append(r)
        with self._lock:
            for dom, rows in groups.items():
                ids, scores = self.index.search(reprs[rows], max(queries[r].k for r in rows),
                                                dom, [queries[r].exclude for r in rows])
                for r, i, s in zip(rows, ids, scores, strict=True):
                    answers[r] = Answer(i[:queries[r].k], s[:queries[r].k], explained[r])
        return [a for a in answers if a is not None]

    def buckets(self, queries: list[Query]) -> list[list[int]]:
        """Rows of ``queries`` per forward pass: all together, or, when padding to the longest
        history, grouped by length so as to minimise the estimated cost of the forward passes
        (:func:`length_buckets`), e.g. lengths [3, 5, 200, 200] -> [[0, 1], [2, 3]]."""
        if self.padding != "longest" or len(queries) < 2:
            return [list(range(len(queries)))]
        return length_buckets([len(q.items) for q in queries], self.cfg.bucket_forward_cost,
                              self.cfg.bucket_attention_span)

    def _answer_by_score(self, queries: list[Query], batch: Any) -> list[Answer]:
        import torch

        scores = self.model.score(batch).float()  # [B, N+1]
        scores[:, 0] = float("-inf")
        dom = torch.as_tensor(np.asarray(self.item_domain[: scores.shape[1]]))  # [N+1]
        explained = self._explain(batch) if any(q.explain for q in queries) else None
        out = []
        for r, q in enumerate(queries):
            row = scores[r].clone()  # [N+1]
            if q.target_domain is not None:
                row[dom != q.target_domain] = float("-inf")
            if len(q.exclude):
                row[torch.as_tensor(int_ids(q.exclude))] = float("-inf")  # the resolved array as is
            top = torch.topk(row, min(q.k, row.shape[0]))
            keep = [(int(i), float(s)) for i, s in zip(top.indices, top.values, strict=True) if s > float("-inf")]
            out.append(Answer([i for i, _ in keep], [s for _, s in keep],
                              _row(explained, r, len(queries)) if q.explain else None))
        return out

    def _explain(self, batch: Any) -> dict[str, Any]:
        try:
            weights = self.model.explain(batch)
        except NotImplementedError:
            return {}
        return {k: v.detach().float().cpu() for k, v in weights.items()}

    def _sample_queries(self) -> list[Query]:
        """Up to 8 real histories of various lengths (1 .. max_len) for the start-up checks."""
        users = [u for u in range(min(self.data.n_users, 64)) if self.data.indptr[u + 1] > self.data.indptr[u]]
        lengths = [1, 2, 3, 5, 8, max(1, self.max_len // 3), max(1, self.max_len // 2), self.max_len]
        qs = []
        for u, n in zip(users[:8], lengths, strict=False):
            rows = slice(int(self.data.indptr[u]), int(self.data.indptr[u + 1]))
            items = [int(i) for i in self.data.item[rows][-min(n, self.max_len):]]
            qs.append(Query(np.asarray(items, dtype=np.int64), None, 1, _NO_IDS, False))
        return qs

    def _check_padding(self) -> str:
        """"longest" when padding to the batch's longest history gives the same user vectors as
        padding to max_len (as the evaluator does) on real histories, else "max_len"."""
        import torch

        qs = self._sample_queries()
        if not qs:
            return "max_len"
        with torch.inference_mode():
            full = self.model.user_repr(self.make_batch(qs, "max_len")).float()  # [B, D]
            short = torch.cat([self.model.user_repr(self.make_batch([q], "longest")).float() for q in qs])  # [B, D]
        same = full.shape == short.shape and torch.allclose(full, short, rtol=1e-4, atol=1e-5)
        return "longest" if same else "max_len"

    def _check_serve_repr(self) -> Any:
        """The model's ``serve_repr`` (a faster ``user_repr`` for inference, e.g. SASRec computing
        only the last position) when it equals ``user_repr`` on real histories, else ``user_repr``."""
        import torch

        fast = getattr(self.model, "serve_repr", None)
        qs = self._sample_queries()
        if fast is None or not qs:
            return self.model.user_repr
        batch = self.make_batch(qs)
        with torch.inference_mode():
            same = torch.allclose(fast(batch).float(), self.model.user_repr(batch).float(), rtol=1e-4, atol=1e-5)
        if not same:
            log.warning("%s.serve_repr differs from user_repr: serving with user_repr", type(self.model).__name__)
            return self.model.user_repr
        return fast

    def _check_scoring(self, vectors: np.ndarray) -> str:
        """"index" when model.score == user_repr · item_vectors on a few real histories, else "model"."""
        import torch

        qs = self._sample_queries()
        if not qs:
            return "index"
        batch = self.make_batch(qs)
        with torch.inference_mode():
            ip = self.model.user_repr(batch).float() @ torch.from_numpy(vectors).T  # [B, N+1]
            full = self.model.score(batch).float()  # [B, N+1]
        if full.shape == ip.shape and torch.allclose(full[:, 1:], ip[:, 1:], rtol=1e-4, atol=1e-4):
            return "index"
        log.warning("model.score is not user_repr · item_vectors: ranking with model.score (no faiss index)")
        return "model"

    # ----------------------------------------------------------------- presenting
    def present(self, idx: int, score: float) -> dict[str, Any]:
        """An answer item: ``{"id", "item_idx", "domain", "title", "image", "score"}``. The part
        without the score is built once per item (on first use, so items added by ``/items`` too)
        and copied."""
        cache = self._presented
        if idx >= len(cache):
            with self._lock:  # the tables as /items leaves them (it appends under this lock, in a thread)
                cache.extend({"id": self.raw_ids[i], "item_idx": i, "domain": self.domains[self.item_domain[i]],
                              "title": self.titles[i], "image": self.image_url(i)}
                             for i in range(len(cache), self.n_items + 1))
        out = cache[idx].copy()
        out["score"] = score
        return out

    def info(self) -> dict[str, Any]:
        from mosaicrec import __version__
        from mosaicrec.utils import code_version

        return {
            "model": self.model_name, "model_class": type(self.model).__name__,
            "content_based": bool(getattr(self.model, "content_based", False)),
            "kind": getattr(self.model, "kind", "sequential"),
            "dataset": self.data.meta.get("name"), "data_hash": self.data.meta.get("content_hash"),
            "domains": self.domains, "n_items": self.n_items, "n_model_items": self.n_model_items,
            "max_len": self.max_len, "scoring": self.scoring, "padding": self.padding,
            "user_repr": getattr(self.repr_fn, "__name__", "user_repr"),
            "index": {("all" if d == GLOBAL else self.domains[d]): k for d, k in self.index.kinds.items()},
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "version": __version__, "code_version": code_version(),
            "batching": {"enabled": self.cfg.batching, "max_batch": self.cfg.max_batch,
                         "max_wait_ms": self.cfg.max_wait_ms, "policy": self.cfg.batch_policy,
                         "switch_interval_ms": self.cfg.switch_interval_ms},
        }


_NO_IDS = np.zeros(0, dtype=np.int64)  # an empty history / exclusion ([0] int64), shared: read-only
_NO_IDS.flags.writeable = False


def length_buckets(lengths: list[int], forward_cost: float, span: float) -> list[list[int]]:
    """Positions of ``lengths`` grouped into forward passes of similar length (padded to their longest).

    A pass over ``n`` rows padded to length ``L`` is estimated to cost ``n * L * (1 + L / span) +
    forward_cost`` (linear layers per position, attention per position growing with ``L``, and a
    fixed per-pass cost; both constants are in padded positions). Rows sorted by length are cut
    where the total estimate is smallest (exact dynamic programme over the cut points, O(n^2)).
    With SASRec (64-d, 2 blocks) on one thread the measured cost of a forward pass was
    1.21 us * n * L + 0.00345 us * n * L^2 + 190 us, i.e. span 350 and forward_cost 157 positions.
    Example (forward_cost 1, span large): lengths [1, 5, 1, 5] -> [[0, 2], [1, 3]].
    """
    order = sorted(range(len(lengths)), key=lambda r: lengths[r])
    lens = [lengths[r] for r in order]
    n = len(lens)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest cost of the first j sorted rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        per_row = lens[j - 1] * (1.0 + lens[j - 1] / span)  # every row of a bucket ending at j pays this
        for i in range(j):
            cost = best[i] + (j - i) * per_row + forward_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups: list[list[int]] = []
    j = n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def _row(explained: dict[str, Any] | None, r: int, b: int) -> dict[str, Any] | None:
    """Row ``r`` of each explain tensor whose first dimension is the batch ``b``; others are shared."""
    if not explained:
        return None
    return {k: (v[r].tolist() if v.dim() and v.shape[0] == b else v.tolist()) for k, v in explained.items()}
