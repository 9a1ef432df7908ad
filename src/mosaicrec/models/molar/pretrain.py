"""MIRM pre-training (Molar's item-model fine-tuning): a separate, resumable job.

Three generative tasks, each a prompt and a target text trained with the causal-LM loss on the
target tokens only:

- ``describe``: title + attributes -> description, the description being LLM-written text from
  the augment cache (``mosaicrec augment PREPARED --template molar_text`` writes
  ``augment/molar_text.parquet``);
- ``image``: image -> description (vision-language backbones, items with an image and a caption
  cache such as ``augment/caption-molar_image.parquet``);
- ``next_item``: the titles of a user's last ``history`` training items -> the next item's title
  (training split only).

Output ``OUT/model/``: the fine-tuned backbone (LoRA merged) with its tokenizer/processor, which
the recommender loads with ``model.item_encoder.pretrained: OUT/model``. ``OUT/state/`` holds
the trainable weights, optimizer state and step every ``save_every`` steps; rerunning the same
config continues from there (a different config is an error).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mosaicrec.config import ConfigError, PrepareConfig, StrictModel
from mosaicrec.models.molar.config import BackboneConfig, LoraConfig
from mosaicrec.utils import atomic_path, hash_obj, read_json, write_json


class TaskConfig(StrictModel):
    enabled: bool = True
    n: int = Field(1000, ge=1, description="examples of this task (the paper: 10,000)")
    source: str | None = Field(None, description="augment cache name (describe: molar_text; image: caption-molar_image)")
    history: int = Field(5, ge=1, description="next_item: history length in titles")


class PretrainConfig(StrictModel):
    data: PrepareConfig
    out: str = Field(description="output folder (model/ and state/)")
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    layers: int | None = Field(None, ge=1)
    mode: Literal["lora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    describe: TaskConfig = Field(default_factory=lambda: TaskConfig(source="molar_text"))
    image: TaskConfig = Field(default_factory=lambda: TaskConfig(source="caption-molar_image"))
    next_item: TaskConfig = Field(default_factory=TaskConfig)
    steps: int = Field(500, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(1e-4, gt=0)
    max_tokens: int = Field(192, ge=16, description="prompt + target tokens cap")
    save_every: int = Field(50, ge=1)
    seed: int = 2024
    bf16: bool = True


def _augment_texts(root: Path, name: str) -> dict[int, str]:
    from mosaicrec.features.augment.cache import cache_path, read_cache

    path = cache_path(root, name)
    if not path.exists():
        return {}
    df = read_cache(path)
    return {int(i): str(t) for i, t in zip(df["item_idx"].to_list(), df["text"].to_list(), strict=True) if t}


def build_examples(cfg: PretrainConfig, data: Any, is_vlm: bool, image_token: str | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Examples ``{"prompt", "target", "image"}`` of the enabled tasks, deterministic in cfg.seed."""
    from mosaicrec.data.schema import TRAIN

    rng = np.random.default_rng(cfg.seed)
    titles = ["", *[str(t or "") for t in data.items["title"].to_list()]]
    texts = ["", *[str(t or "") for t in data.items["text"].to_list()]]
    out: list[dict[str, Any]] = []
    counts = {"describe": 0, "image": 0, "next_item": 0}
    if cfg.describe.enabled and cfg.describe.source:
        desc = _augment_texts(data.root, cfg.describe.source)
        ids = sorted(desc)
        for i in rng.permutation(ids)[: cfg.describe.n] if ids else []:
            out.append({"prompt": f"Item information:\nTitle: {titles[i]}\nAttributes: {texts[i]}\nDescription:",
                        "target": " " + desc[int(i)], "image": None})
            counts["describe"] += 1
    if cfg.image.enabled and cfg.image.source and is_vlm and "image" in data.items.columns:
        caps = _augment_texts(data.root, cfg.image.source)
        paths = ["", *data.items["image"].to_list()]
        ids = [i for i in sorted(caps) if paths[i]]
        for i in rng.permutation(ids)[: cfg.image.n] if ids else []:
            p = Path(paths[i]) if Path(paths[i]).is_absolute() else data.root / paths[i]
            out.append({"prompt": f"Item image: {image_token}\nDescription:", "target": " " + caps[int(i)], "image": str(p)})
            counts["image"] += 1
    if cfg.next_item.enabled:
        rows = np.flatnonzero(data.split == TRAIN)  # [R]
        users = data.user_of_rows()
        h = cfg.next_item.history
        ok = [r for r in rows if r >= 1 and users[r - 1] == users[r]]  # has a previous row of the same user
        for r in rng.permutation(ok)[: cfg.next_item.n] if ok else []:
            lo = int(r) - 1
            while lo > int(r) - h and lo - 1 >= 0 and users[lo - 1] == users[r]:
                lo -= 1
            hist = "; ".join(titles[int(data.item[j])] for j in range(lo, int(r)))
            out.append({"prompt": f"User history: {hist}\nNext item:", "target": " " + titles[int(data.item[r])],
                        "image": None})
            counts["next_item"] += 1
    if not out:
        raise ValueError(f"{data.root}: no MIRM examples (no augment cache {cfg.describe.source!r}, no images, "
                         "next_item disabled or no training interactions)")
    return out, counts


def _batch(bb: Any, examples: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
    """Right-padded input_ids / attention_mask / labels (-100 on prompt and padding)."""
    import torch

    from mosaicrec.models.molar.items import _open_image

    tok = bb.tokenizer
    eos = tok.eos_token or ""
    full = [e["prompt"] + e["target"] + eos for e in examples]
    images = [_open_image(e["image"]) for e in examples if e["image"]]
    if bb.processor is not None:
        kw: dict[str, Any] = {"images": images} if images else {}
        enc = dict(bb.processor(text=full, padding=True, return_tensors="pt", **kw))
        prompt_lens = [len(p) for p in bb.processor(text=[e["prompt"] for e in examples],
                                                     **({"images": images} if images else {}))["input_ids"]]
    else:
        enc = dict(tok(full, padding=True, return_tensors="pt", padding_side="right"))
        prompt_lens = [len(p) for p in tok([e["prompt"] for e in examples])["input_ids"]]
    ids, mask = enc["input_ids"][:, :max_tokens], enc["attention_mask"][:, :max_tokens]
    labels = ids.masked_fill(mask == 0, -100)
    for row, n in enumerate(prompt_lens):
        labels[row, :n] = -100
    enc.update(input_ids=ids, attention_mask=mask, labels=labels)
    return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}


def run_pretrain(cfg: PretrainConfig, work_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train (or continue) the MIRM job; returns the manifest written to ``OUT/done.json``."""
    import torch
    from safetensors.torch import load_file, save_file

    from mosaicrec.data.schema import PreparedData
    from mosaicrec.models.molar.backbone import load_backbone
    from mosaicrec.models.molar.items import autocast
    from mosaicrec.training.run import resolve_data

    out = Path(cfg.out)
    state = out / "state"
    key = hash_obj(cfg.model_dump(mode="json", exclude={"steps", "save_every"}))
    data = PreparedData.load(resolve_data(cfg.data, work_dir))
    torch.manual_seed(cfg.seed)
    bb = load_backbone(cfg.backbone, cfg.layers)
    examples, counts = build_examples(cfg, data, bb.is_vlm, bb.image_token)
    lm = bb.lm
    if cfg.mode == "lora":
        from peft import LoraConfig as PeftLora
        from peft import get_peft_model

        lm = get_peft_model(lm, PeftLora(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                         target_modules=list(cfg.lora.target_modules)))
    params = {n: p for n, p in lm.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr)
    step, losses = 0, []
    if (state / "progress.json").exists():
        prog = read_json(state / "progress.json")
        if prog.get("key") != key:
            raise ConfigError(f"{state / 'progress.json'}: written by a different MIRM config; use another `out`")
        weights = load_file(str(state / "trainable.safetensors"))
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(weights[n])
        opt.load_state_dict(torch.load(state / "optimizer.pt", weights_only=True))
        step, losses = int(prog["step"]), list(prog["losses"])
        print(f"[molar-pretrain] resuming at step {step}", flush=True)

    def save_state() -> None:
        state.mkdir(parents=True, exist_ok=True)
        with atomic_path(state / "trainable.safetensors") as tmp:
            save_file({n: p.detach().contiguous() for n, p in params.items()}, str(tmp))
        with atomic_path(state / "optimizer.pt") as tmp:
            torch.save(opt.state_dict(), tmp)
        write_json(state / "progress.json", {"key": key, "step": step, "losses": losses})

    per_epoch = max(1, len(examples) // cfg.batch_size)
    lm.train()
    t0 = time.perf_counter()
    while step < cfg.steps:
        epoch, k = divmod(step, per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(examples))  # same order on resume
        batch = _batch(bb, [examples[i] for i in order[k * cfg.batch_size:(k + 1) * cfg.batch_size]], cfg.max_tokens)
        with autocast(cfg.bf16):
            loss = lm(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        if progress and (step % 10 == 0 or step == cfg.steps):
            print(f"[molar-pretrain] step {step}/{cfg.steps} loss {np.mean(losses[-10:]):.4f}", flush=True)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_state()
    lm.eval()
    peft_or_lm: Any = lm
    final = peft_or_lm.merge_and_unload() if cfg.mode == "lora" else peft_or_lm
    model_dir = out / "model"
    tmp = out / ".model.tmp"
    final.save_pretrained(tmp)
    (bb.processor or bb.tokenizer).save_pretrained(tmp)
    if model_dir.exists():
        import shutil

        shutil.rmtree(model_dir)
    tmp.rename(model_dir)
    manifest = {"model": str(model_dir), "steps": step, "examples": counts, "key": key,
                "loss_first": losses[0] if losses else None, "loss_last_10": float(np.mean(losses[-10:])) if losses else None,
                "seconds_this_run": time.perf_counter() - t0, "config": cfg.model_dump(mode="json")}
    write_json(out / "done.json", manifest)
    return manifest
