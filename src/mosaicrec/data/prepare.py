"""The prepare stage: a source's raw records -> the canonical tables of :mod:`schema`.

``prepare(cfg, out_dir)`` runs: read (source adapter) -> domain filter -> duplicates ->
iterative k-core -> id remapping -> ordering (tie policy) -> split -> cold items -> write.
Files are written one by one through :func:`mosaicrec.utils.atomic_path`, after removing any
old ``meta.json``, and ``meta.json`` goes last: a killed run leaves no ``meta.json``, so
:meth:`PreparedData.load` refuses the folder. A folder whose ``meta.json`` carries the same
config hash and input hash is reused (``force=True`` redoes it).

``ensure_prepared(cfg, work_dir)`` is the cache other stages call: it prepares into
``work_dir/<name>-<key>`` where the key hashes the config and the input files' contents.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaicrec.config import PrepareConfig
from mosaicrec.data.schema import SCHEMA_VERSION, SPLITS, DataError
from mosaicrec.utils import atomic_path, code_version, file_lock, hash_obj, read_json, sha256_file, write_json

TABLES = ("interactions.parquet", "items.parquet", "users.parquet")


@dataclass
class PrepareResult:
    out_dir: Path
    meta: dict[str, Any]
    skipped: bool  # True when an identical dataset was already there


def make_source(cfg: PrepareConfig, bad: Any = None) -> Any:
    from mosaicrec.data.sources.base import BadRecords
    from mosaicrec.registry import SOURCES

    cls = SOURCES.get(cfg.source)
    return cls(cfg.path, cfg.options, bad or BadRecords(cfg.on_bad_record))


def config_hash(cfg: PrepareConfig) -> str:
    """Hash of everything in the config but the input path (the input hash covers the data)."""
    return hash_obj(cfg.model_dump(mode="json", exclude={"path"}))


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_hash(path: Path) -> str:
    """sha256 of a file's contents, memoised per process by (path, size, mtime)."""
    if not path.is_file():
        return f"missing:{path.name}"
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_file(path)
    return _FILE_HASHES[key]


def input_hash(cfg: PrepareConfig) -> str:
    """Hash of the contents of every input file of the source (not of their names)."""
    return hash_obj([_file_hash(p) for p in make_source(cfg).input_files()])


def dataset_name(cfg: PrepareConfig) -> str:
    return cfg.name or Path(cfg.path).resolve().name


def is_current(out_dir: Path, c_hash: str, i_hash: str) -> dict[str, Any] | None:
    """The existing meta.json when ``out_dir`` holds a finished dataset with these hashes."""
    meta_path = out_dir / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
    except ValueError:
        return None
    if (meta.get("schema_version") == SCHEMA_VERSION and meta.get("config_hash") == c_hash
            and meta.get("input_hash") == i_hash and all((out_dir / t).is_file() for t in TABLES)):
        return meta
    return None


def prepare(cfg: PrepareConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Prepare ``cfg`` into ``out_dir`` (reused when identical) and return the folder."""
    return run_prepare(cfg, out_dir, force=force).out_dir


def ensure_prepared(cfg: PrepareConfig, work_dir: str | Path) -> Path:
    """Prepare once per (config, input contents) under ``work_dir``; returns the dataset folder."""
    c_hash, i_hash = config_hash(cfg), input_hash(cfg)
    out = Path(work_dir) / f"{dataset_name(cfg)}-{hash_obj([c_hash, i_hash])[:12]}"
    return run_prepare(cfg, out, hashes=(c_hash, i_hash)).out_dir


def run_prepare(cfg: PrepareConfig, out_dir: str | Path, force: bool = False,
                hashes: tuple[str, str] | None = None) -> PrepareResult:
    """Prepare into ``out_dir`` unless it is current. Concurrent callers on the same folder (e.g.
    the ranks of a distributed run) are serialised by a lock file; the later ones reuse the result."""
    out_dir = Path(out_dir)
    c_hash, i_hash = hashes or (config_hash(cfg), input_hash(cfg))
    with file_lock(out_dir / ".prepare.lock"):
        if not force and (meta := is_current(out_dir, c_hash, i_hash)) is not None:
            return PrepareResult(out_dir, meta, skipped=True)
        start = time.perf_counter()
        tables, meta = build_tables(cfg)
        meta.update(config_hash=c_hash, input_hash=i_hash)
        write_dataset(out_dir, tables, meta, start)
    return PrepareResult(out_dir, meta, skipped=False)


def build_tables(cfg: PrepareConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run every step in memory; returns the tables to write and the meta.json content."""
    import polars as pl

    from mosaicrec.data import transforms as T
    from mosaicrec.data.sources.base import BadRecords

    bad = BadRecords(cfg.on_bad_record)
    raw = make_source(cfg, bad).read()
    stages: dict[str, int] = {"read": raw.interactions.height}
    df = raw.interactions.with_row_index("_ord").with_columns(pl.col("_ord").cast(pl.Int64))
    df, domains = T.filter_domains(df, cfg.domains, raw.domains)
    stages["after_domain_filter"] = df.height
    df, user_names, item_names = T.encode_ids(df, domains)
    df = T.drop_duplicates(df, cfg.duplicates)
    stages["after_duplicates"] = df.height
    df, rounds = T.kcore(df, cfg.min_user_interactions, cfg.min_item_interactions, cfg.kcore_scope)
    stages["after_kcore"] = df.height
    if df.height == 0:
        raise DataError(f"{cfg.path}: no interactions left after filtering (stages: {stages}); "
                        "relax domains / k-core settings or check the input")
    df, items, users = T.remap(df, raw.items, domains, user_names, item_names)
    df = T.order_rows(df, cfg.tie_policy, cfg.seed)
    df = T.assign_split(df, cfg, raw.has_time)
    cold = T.pick_cold_items(items.height, cfg.cold_item_fraction, cfg.seed)
    df = T.drop_cold_from_history(df, cold)
    stages["after_cold_items"] = df.height
    inter = df.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32),
                      pl.col("domain_idx").cast(pl.Int8).alias("domain"), pl.col("ts").cast(pl.Int64),
                      pl.col("split").cast(pl.String))
    n_no_meta = int(items["_no_meta"].sum())
    tables = {"interactions.parquet": inter, "items.parquet": items.drop("_no_meta"), "users.parquet": users}
    if len(cold):
        tables["cold_items.parquet"] = pl.DataFrame({"item_idx": pl.Series(cold, dtype=pl.Int32)})
    meta = {
        "schema_version": SCHEMA_VERSION, "name": dataset_name(cfg), "source": cfg.source,
        "domains": domains, "n_users": users.height, "n_items": items.height, "n_interactions": inter.height,
        "split": cfg.split, "tie_policy": cfg.tie_policy, "has_time": raw.has_time,
        "counts": counts(inter, domains), "stages": stages, "kcore_rounds": rounds,
        "cold_items": {"count": int(len(cold)), "file": "cold_items.parquet" if len(cold) else None},
        "items_without_metadata": n_no_meta,
        "skipped_records": {"total": bad.total, "per_file": bad.per_file},
        "source_info": raw.info, "config": cfg.model_dump(mode="json"), "code_version": code_version(),
    }
    return tables, meta


def counts(inter: Any, domains: list[str]) -> dict[str, Any]:
    """Interactions per split, and users/items/interactions per domain and split."""
    import polars as pl

    def per_split(frame: Any) -> dict[str, int]:
        got = dict(frame.group_by("split").len().iter_rows())
        return {s: int(got.get(s, 0)) for s in SPLITS}

    out: dict[str, Any] = {"split": per_split(inter), "domain": {}}
    for i, d in enumerate(domains):
        part = inter.filter(pl.col("domain") == i)
        out["domain"][d] = {"users": part["user_idx"].n_unique(), "items": part["item_idx"].n_unique(),
                            "interactions": part.height, "split": per_split(part)}
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_dataset(out_dir: Path, tables: dict[str, Any], meta: dict[str, Any], start: float) -> None:
    """Write the tables atomically one by one, then meta.json (removed first, written last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "meta.json").unlink(missing_ok=True)
    stale = out_dir / "cold_items.parquet"
    if "cold_items.parquet" not in tables:
        stale.unlink(missing_ok=True)
    hashes = {}
    for name, frame in tables.items():
        with atomic_path(out_dir / name) as tmp:
            frame.write_parquet(tmp, statistics=True)
        hashes[name] = sha256_file(out_dir / name)
    meta["content_hash"] = hash_obj(hashes)
    meta["seconds"] = round(time.perf_counter() - start, 2)
    meta["peak_rss_mib"] = peak_rss_mib()
    write_json(out_dir / "meta.json", meta)


def load_prepare_config(yaml_path: str | Path | None = None, overrides: list[str] | None = None,
                        **fields: Any) -> PrepareConfig:
    """A :class:`PrepareConfig` from a YAML file (a dataset config, or an experiment config's
    ``data:`` section), ``key=value`` overrides and keyword fields (None = not given). A
    relative ``path`` in the YAML is relative to the YAML file's folder; one given as a keyword
    is relative to the working directory."""
    from pydantic import ValidationError

    from mosaicrec.config import ConfigError, apply_overrides, load_yaml

    raw: dict[str, Any] = {}
    base = Path.cwd()
    if yaml_path is not None:
        raw = load_yaml(yaml_path)
        raw = raw["data"] if isinstance(raw.get("data"), dict) else raw
        base = Path(yaml_path).resolve().parent
    overrides = [o[len("data."):] if o.startswith("data.") else o for o in overrides or []]
    raw = apply_overrides(raw, overrides)
    if fields.get("path") is not None:
        fields["path"] = str(Path(fields["path"]).resolve())
    raw.update({k: v for k, v in fields.items() if v is not None})
    try:
        cfg = PrepareConfig(**raw)
    except ValidationError as e:
        raise ConfigError(f"{yaml_path or 'prepare arguments'}: {e}") from None
    if not Path(cfg.path).is_absolute():
        cfg.path = str((base / cfg.path).resolve())
    return cfg
