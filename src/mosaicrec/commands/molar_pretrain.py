"""``mosaicrec molar-pretrain CONFIG.yaml``: Molar's MIRM item-model pre-training (resumable).

Writes ``OUT/model/`` (load it with ``model.item_encoder.pretrained``), ``OUT/state/`` (resume)
and ``OUT/done.json``. Rerunning the same config continues where it stopped; a larger
``steps`` continues training. See mosaicrec.models.molar.pretrain and docs/molar.md.
"""

from __future__ import annotations

import argparse

HELP = "Molar MIRM pre-training of the item LM (describe / image / next-item tasks), resumable"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML with data, out, backbone, tasks, steps ... (PretrainConfig)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. steps=200 next_item.n=500")
    p.add_argument("--work-dir", default="work", help="cache of prepared data")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pydantic import ValidationError

    from mosaicrec.config import ConfigError, apply_overrides, load_yaml
    from mosaicrec.models.molar.pretrain import PretrainConfig, run_pretrain

    raw = apply_overrides(load_yaml(args.config), args.overrides)
    try:
        cfg = PretrainConfig(**raw)
    except ValidationError as e:
        raise ConfigError(f"{args.config}: {e}") from None
    base = Path(args.config).resolve().parent
    if not Path(cfg.data.path).is_absolute():
        cfg.data.path = str((base / cfg.data.path).resolve())
    m = run_pretrain(cfg, Path(args.work_dir), progress=not args.no_progress)
    print(f"MIRM: {m['steps']} steps, examples {m['examples']}, loss {m['loss_first']:.4f} -> "
          f"{m['loss_last_10']:.4f} (last 10); model in {m['model']}")
    return 0
