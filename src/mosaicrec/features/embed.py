"""The ``embed`` stage: encode one item field with a frozen encoder into the feature store.

Output (see store.py): ``<features_dir>/<name>/<field>.npy`` [N+1, d] (row 0 zeros),
``<field>.mask.npy`` [N+1] bool and ``manifest.json``. Work is split into chunks of
``chunk_size`` items; each finished chunk is written atomically to a shard folder keyed by the
model, options and input hash, so an interrupted run resumes where it stopped, and ``world``
processes each encode every ``world``-th chunk before rank 0 merges them into one result.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mosaicrec.config import StrictModel
from mosaicrec.features.encoders.base import EncoderConfig
from mosaicrec.features.fields import FieldInputs, field_file_stem, field_inputs
from mosaicrec.features.images import ImageReport, open_image
from mosaicrec.utils import atomic_path, file_lock, hash_obj


class EmbedConfig(StrictModel):
    """One embedding job: which encoder, which field, how it is stored."""

    encoder: str = Field("minilm", description="registered encoder (mosaicrec.registry.ENCODERS)")
    field: str = Field("title", description="title | text | image | augment:<name> | parts joined by '+'")
    name: str | None = Field(None, description="output folder under features_dir; default = encoder")
    joiner: str = Field(". ", description="glue between the parts of a '+' field")
    template: str | None = Field(None, description="format string over the parts, e.g. '{title} | {text}'")
    dtype: Literal["float32", "float16"] = "float32"
    chunk_size: int = Field(512, ge=1, description="items per resumable chunk")
    encoder_config: EncoderConfig = Field(default_factory=EncoderConfig)
    image_base: str | None = Field(None, description="folder of relative image paths; default prepared dir")
    image_cache: str | None = Field(None, description="download cache for URL images; default <prepared>/image_cache")
    url_timeout: float = Field(10.0, gt=0)
    progress: bool = True

    @property
    def out_name(self) -> str:
        return self.name or self.encoder


@dataclass
class EmbedResult:
    path: Path
    dim: int
    n_items: int
    n_missing: int
    skipped: bool  # True when an up-to-date result already existed
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    image_report: ImageReport | None = None


def _encoder(cfg: EmbedConfig) -> Any:
    from mosaicrec.registry import ENCODERS

    return ENCODERS.get(cfg.encoder)(cfg.encoder_config)


def _chunk_key(cfg: EmbedConfig, enc: Any, inputs: FieldInputs) -> str:
    return hash_obj({"encoder": cfg.encoder, "model": enc.describe(), "input": inputs.input_hash,
                     "chunk": cfg.chunk_size, "dtype": cfg.dtype})


def _encode_chunk(enc: Any, inputs: FieldInputs, lo: int, hi: int, cfg: EmbedConfig,
                  root: Path) -> tuple[np.ndarray | None, np.ndarray, list[tuple[int, str, str]]]:
    """Encode items lo+1..hi (0-based slice of inputs); return (vectors of present rows, mask, failures)."""
    values = inputs.values[lo:hi]
    mask = np.array([v is not None for v in values], dtype=bool)
    failures: list[tuple[int, str, str]] = []
    if inputs.modality == "image":
        base = Path(cfg.image_base) if cfg.image_base else root
        cache = Path(cfg.image_cache) if cfg.image_cache else root / "image_cache"
        imgs = []
        for j, ref in enumerate(values):
            if ref is None:
                continue
            img, why = open_image(ref, base, cache, cfg.url_timeout)
            if img is None:
                mask[j] = False
                failures.append((lo + j + 1, ref, why))
            else:
                imgs.append(img)
        vecs = enc.encode_images(imgs) if imgs else None
    else:
        texts = [v for v in values if v is not None]
        vecs = enc.encode_texts(texts) if texts else None
    return vecs, mask, failures


def _save_chunk(path: Path, vecs: np.ndarray | None, mask: np.ndarray, dim: int | None,
                failures: list[tuple[int, str, str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, vecs=vecs if vecs is not None else np.zeros((0, dim or 0), np.float32),
                 mask=mask, failures=np.array(json.dumps(failures)))


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, dynamic_ncols=True)


def encode_shards(inputs: FieldInputs, cfg: EmbedConfig, enc: Any, shard_dir: Path, root: Path,
                  rank: int = 0, world: int = 1) -> int:
    """Encode this rank's unfinished chunks into ``shard_dir``; return how many were encoded."""
    n = len(inputs.values)
    chunks = [c for c in range(0, max(1, -(-n // cfg.chunk_size))) if c % world == rank]
    todo = [c for c in chunks if not (shard_dir / f"chunk-{c:06d}.npz").exists()]
    done_items = sum(min(cfg.chunk_size, n - c * cfg.chunk_size) for c in chunks if c not in todo)
    bar = _progress(sum(min(cfg.chunk_size, n - c * cfg.chunk_size) for c in chunks),
                    f"embed {cfg.out_name}/{inputs.field}" + (f" [rank {rank}]" if world > 1 else ""),
                    cfg.progress and (rank == 0 or world > 1))
    bar.update(done_items)
    enc.plan(sum(v is not None for c in todo for v in inputs.values[c * cfg.chunk_size:(c + 1) * cfg.chunk_size]))
    for c in todo:
        lo, hi = c * cfg.chunk_size, min(n, (c + 1) * cfg.chunk_size)
        vecs, mask, failures = _encode_chunk(enc, inputs, lo, hi, cfg, root)
        _save_chunk(shard_dir / f"chunk-{c:06d}.npz", vecs, mask, None if vecs is not None else enc.dim,
                    failures)
        bar.update(hi - lo)
    bar.close()
    return len(todo)


def merge_shards(inputs: FieldInputs, cfg: EmbedConfig, shard_dir: Path, out_dir: Path,
                 enc: Any) -> tuple[int, ImageReport]:
    """Assemble the chunks into ``<field>.npy`` / ``<field>.mask.npy`` (atomic); return (dim, report)."""
    n = len(inputs.values)
    n_chunks = max(1, -(-n // cfg.chunk_size))
    parts = []
    for c in range(n_chunks):
        path = shard_dir / f"chunk-{c:06d}.npz"
        if not path.exists():
            raise RuntimeError(f"{path}: chunk missing at merge time (a worker did not finish)")
        with np.load(path) as z:
            parts.append((z["vecs"], z["mask"], json.loads(str(z["failures"]))))
    dims = {v.shape[1] for v, m, _ in parts if len(v)}
    dim = dims.pop() if dims else int(enc.dim)
    dtype = np.float16 if cfg.dtype == "float16" else np.float32
    arr = np.zeros((n + 1, dim), dtype=dtype)  # [N+1, d], row 0 = padding
    mask = np.zeros(n + 1, dtype=bool)  # [N+1]
    report = ImageReport()
    for c, (vecs, m, failures) in enumerate(parts):
        rows = 1 + c * cfg.chunk_size + np.flatnonzero(m)
        arr[rows] = vecs.astype(dtype)
        mask[rows] = True
        report.n_ok += int(m.sum())
        for f in failures:
            report.add_failure(*f)
    stem = field_file_stem(inputs.field)
    with atomic_path(out_dir / f"{stem}.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
    with atomic_path(out_dir / f"{stem}.mask.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, mask)
    return dim, report


def _up_to_date(out_dir: Path, inputs: FieldInputs, enc: Any, cfg: EmbedConfig) -> dict[str, Any] | None:
    from mosaicrec.features.store import read_manifest

    entry = read_manifest(out_dir).get("fields", {}).get(inputs.field)
    stem = field_file_stem(inputs.field)
    if (entry and entry.get("input_hash") == inputs.input_hash and entry.get("dtype") == cfg.dtype
            and entry.get("model") == enc.describe() and (out_dir / f"{stem}.npy").exists()):
        return entry
    return None


def run_embed(data: Any, cfg: EmbedConfig, features_dir: str | Path | None = None, rank: int = 0,
              world: int = 1, barrier: Callable[[], None] | None = None,
              force: bool = False) -> EmbedResult:
    """Embed ``cfg.field`` of every item; ranks > 0 only encode their chunks (rank 0 merges)."""
    from mosaicrec.features.store import update_manifest

    t0 = time.perf_counter()
    root = Path(data.root)
    out_dir = Path(features_dir) if features_dir else root / "features"
    out_dir = out_dir / cfg.out_name
    inputs = field_inputs(data, cfg.field, cfg.joiner, cfg.template,
                          Path(cfg.image_base) if cfg.image_base else None)
    enc = _encoder(cfg)
    # One process at a time per feature (two runs sharing a work dir, e.g. two benchmark seeds
    # started together): the later one waits, then finds the feature current and reuses it. The
    # ranks of one distributed job split the chunks instead and meet at ``barrier``.
    lock = out_dir / f".{field_file_stem(inputs.field)}.lock" if world == 1 else None
    with file_lock(lock):
        if not force and (entry := _up_to_date(out_dir, inputs, enc, cfg)):
            return EmbedResult(out_dir, int(entry["dimension"]), data.n_items, int(entry["n_missing"]),
                               skipped=True, notes=inputs.notes)
        shard_dir = out_dir / f".{field_file_stem(inputs.field)}.chunks-{_chunk_key(cfg, enc, inputs)}"
        shard_dir.mkdir(parents=True, exist_ok=True)
        encode_shards(inputs, cfg, enc, shard_dir, root, rank, world)
        if barrier:
            barrier()
        dim, report = (0, ImageReport())
        if rank == 0:
            dim, report = merge_shards(inputs, cfg, shard_dir, out_dir, enc)
            update_manifest(out_dir, cfg, enc, inputs, dim, report)
            shutil.rmtree(shard_dir, ignore_errors=True)
        if barrier:
            barrier()
        return EmbedResult(out_dir, dim, data.n_items, data.n_items - report.n_ok if rank == 0 else -1,
                           skipped=False, seconds=time.perf_counter() - t0, notes=inputs.notes,
                           image_report=report if inputs.modality == "image" else None)
