"""Exports: a LoRA file every Wan tool reads, and full fine-tunes as a model directory we load.

LoRA key convention (documented in training/README.md)::

    diffusion_model.blocks.{i}.{self_attn|cross_attn}.{q|k|v|o|k_img|v_img}.lora_A.weight   [r, in]
    diffusion_model.blocks.{i}.{self_attn|cross_attn}.{q|k|v|o|k_img|v_img}.lora_B.weight   [out, r]
    diffusion_model.blocks.{i}.ffn.{0|2}.lora_{A|B}.weight

Original Wan module names behind ``diffusion_model.``, peft's ``lora_A``/``lora_B`` (down/up), no
``.alpha`` keys: peft's alpha/rank scale is multiplied into ``lora_B``, so every loader applies
``W + strength * B @ A`` with scale 1 (DiffSynth ``load_lora``, diffusers
``_convert_non_diffusers_wan_lora_to_diffusers``, ComfyUI's ``diffusion_model.*`` key map).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

log = logging.getLogger(__name__)

LORA_PREFIX = "diffusion_model."


def lora_export_state(named_params: dict[str, torch.Tensor], scale: float, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """peft names in our module (``dit.blocks.0.self_attn.q.lora_A.default.weight``) -> the file's keys."""
    out = {}
    for name, tensor in named_params.items():
        if ".lora_A." not in name and ".lora_B." not in name:
            continue
        key = name.removeprefix("dit.").replace(".default.", ".")
        value = tensor.detach().float().cpu()
        if ".lora_B." in key:
            value = value * scale
        out[LORA_PREFIX + key] = value.to(dtype).contiguous()
    if not out:
        raise ValueError("no LoRA tensors to export (was this a full fine-tune?)")
    return out


def write_lora(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt", **{k: str(v) for k, v in metadata.items()}})
    return path


def lora_file_name(expert: str | None) -> str:
    return f"lora_{expert}.safetensors" if expert else "lora.safetensors"


def export_full_model(out: Path, *, source_dir: Path, spec, trained: dict[str, torch.Tensor], expert: str | None,
                      dtype: torch.dtype, shards: int) -> Path:
    """A model directory in the published layout: the trained DiT (+VACE) shards, every other file
    linked (or copied) from the source model directory."""
    from wanray.model_writer import write_dit_shards
    from wanray.specs import DIT_CONFIG_FILE, DIT_INDEX_FILE, DIT_SHARD_GLOB

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    source_dir = Path(source_dir)
    trained_folder = ""
    if spec.expert_dirs:
        trained_folder = spec.expert_dirs[0] if expert == "high_noise" else spec.expert_dirs[1]
    for src in source_dir.rglob("*"):
        rel = src.relative_to(source_dir)
        if src.is_dir():
            continue
        in_trained = str(rel.parent) == (trained_folder or ".")
        if in_trained and (src.match(DIT_SHARD_GLOB) or src.name == DIT_INDEX_FILE):
            continue  # replaced by the trained shards
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(src, dst)
    folder = out / trained_folder if trained_folder else out
    write_dit_shards(folder, trained, shards=shards, dtype=dtype)
    if not (folder / DIT_CONFIG_FILE).exists():
        (folder / DIT_CONFIG_FILE).write_text(json.dumps(spec.dit_config_json(), indent=2) + "\n")
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same file system: no copy of multi-GB encoders
    except OSError:
        shutil.copy2(src, dst)
