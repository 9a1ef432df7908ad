"""``mosaicrec embed``: encode item fields with a frozen encoder into the feature store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mosaicrec.features.embed import EmbedConfig

HELP = "encode item fields (title, text, image, augment:<name>) with a frozen encoder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prepared_dir", help="prepared dataset folder (items.parquet, meta.json)")
    p.add_argument("--encoder", default="minilm", help="registered encoder: minilm, sentence, clip, efficientnet")
    p.add_argument("--field", action="append", default=None,
                   help="field to encode (repeatable): title, text, image, title+text, augment:<name>")
    p.add_argument("--model", default=None, help="model name or local path for the encoder")
    p.add_argument("--revision", default=None, help="hub revision")
    p.add_argument("--name", default=None, help="output folder under features/ (default: encoder name)")
    p.add_argument("--features-dir", default=None, help="default: <prepared_dir>/features")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=512, help="items per resumable chunk")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-normalize", action="store_true", help="keep raw (not L2-normalised) vectors")
    p.add_argument("--max-length", type=int, default=None, help="token limit for texts")
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="bfloat16: forward pass under torch.autocast (faster on CPUs with AVX512-BF16/AMX); "
                        "auto: bfloat16 for sentence-transformers encoders on such CPUs, else float32")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile (inductor; needs a C++ compiler, else eager with a warning) for batches of "
                        ">= 2 texts of sentence-transformers encoders: on/off, or auto = on for jobs of at least "
                        "200,000 texts, where the one-off compilation (about a minute) pays back")
    p.add_argument("--max-batch-tokens", type=int, default=1024,
                   help="text batches: at most this many padded tokens (texts are length-sorted); 0 = no limit")
    p.add_argument("--joiner", default=". ", help="glue between the parts of a '+' field")
    p.add_argument("--template", default=None, help="format string over the parts, e.g. '{title} | {text}'")
    p.add_argument("--image-base", default=None, help="folder of relative image paths (default: prepared dir)")
    p.add_argument("--image-cache", default=None, help="download cache for URL images")
    p.add_argument("--nproc", type=int, default=1, help="spawn this many worker processes (gloo)")
    p.add_argument("--force", action="store_true", help="recompute even when up to date")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_config(args: argparse.Namespace, field: str) -> EmbedConfig:
    from mosaicrec.features.embed import EmbedConfig
    from mosaicrec.features.encoders.base import EncoderConfig

    enc = EncoderConfig(model=args.model, revision=args.revision, device=args.device,
                        batch_size=args.batch_size, normalize=not args.no_normalize,
                        max_length=args.max_length, precision=args.precision,
                        compile=args.compile, max_batch_tokens=args.max_batch_tokens or None)
    return EmbedConfig(encoder=args.encoder, field=field, name=args.name, joiner=args.joiner,
                       template=args.template, dtype=args.dtype, chunk_size=args.chunk_size,
                       encoder_config=enc, image_base=args.image_base, image_cache=args.image_cache,
                       progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    from mosaicrec.data.schema import PreparedData
    from mosaicrec.features.distributed import env_world, run_embed_env, run_embed_spawn

    data = PreparedData.load(args.prepared_dir)
    features_dir = Path(args.features_dir) if args.features_dir else None
    rank, _ = env_world()
    for field in args.field or ["title"]:
        cfg = build_config(args, field)
        if args.nproc > 1:
            res = run_embed_spawn(args.prepared_dir, cfg, features_dir, args.nproc, args.force)
        else:
            res = run_embed_env(data, cfg, features_dir, args.force)
        if rank != 0:
            continue
        state = "up to date" if res.skipped else f"written in {res.seconds:.1f} s"
        print(f"{res.path}/{field}: [{res.n_items + 1}, {res.dim}] {state}; "
              f"{res.n_missing} of {res.n_items} items without input (zero rows, mask=False)")
        for note in res.notes:
            print(f"  note: {note}")
        if res.image_report is not None and res.image_report.missing:
            print(res.image_report.summary(), file=sys.stderr)
    return 0
