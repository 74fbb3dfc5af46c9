"""Write a model directory in Wan-AI's published layout (original key names), for any spec.

Used to ship the embedded model, to export full fine-tunes, and by tests that need tiny files in
exactly the layout a 14B download has::

    config.json  diffusion_pytorch_model-0000N-of-0000M.safetensors  ...index.json
    models_t5_umt5-xxl-enc-bf16.pth  Wan2.1_VAE.pth  models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth
    google/umt5-xxl/{tokenizer.json,tokenizer_config.json,special_tokens_map.json}
    (Wan2.2: high_noise_model/ and low_noise_model/ each hold config.json and the shards)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from wanray import components as C
from wanray.specs import (
    CLIP_FILE,
    DEFAULT_NEGATIVE_PROMPT,
    DIT_CONFIG_FILE,
    DIT_INDEX_FILE,
    T5_FILE,
    TOKENIZER_DIR,
    VAE_FILE,
    ModelSpec,
)


def _cast(state: dict, dtype: torch.dtype | None) -> dict:
    out = {}
    for k, v in state.items():
        v = v.detach().to("cpu")
        out[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
        out[k] = out[k].contiguous()
    return out


def dit_state_dict(dit: torch.nn.Module, vace: torch.nn.Module | None) -> dict:
    """Original Wan key names: the DiT's own, plus VACE's ``vace_*`` keys in the same files."""
    state = dict(dit.state_dict())
    if vace is not None:
        state.update(vace.state_dict())
    return state


def write_dit_shards(folder: Path, state: dict, shards: int = 1, dtype: torch.dtype | None = torch.bfloat16) -> list[Path]:
    """``diffusion_pytorch_model-0000N-of-0000M.safetensors`` plus the index, split into ``shards`` files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = _cast(state, dtype)
    keys = list(state)
    per = math.ceil(len(keys) / shards)
    paths, weight_map = [], {}
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in keys[i * per : (i + 1) * per]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
        paths.append(folder / name)
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / DIT_INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return paths


def write_tokenizer(folder: Path, vocab_size: int, text_len: int, extra_corpus: list[str] = ()) -> Path:
    """A umT5-like tokenizer (Unigram + Metaspace, pad=0, eos=1, unk=2), trained here on a small corpus."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    special = ["<pad>", "</s>", "<unk>"]
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        unk_token="<unk>",
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.;:!?'-()"),
    )
    tokenizer.train_from_iterator(tokenizer_corpus() + list(extra_corpus), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": text_len,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special_map = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    return folder


def tokenizer_corpus() -> list[str]:
    """Words the miniature tokenizer learns whole; anything else falls back to smaller pieces."""
    words = (Path(__file__).parent / "assets" / "tokenizer_corpus.txt").read_text().split("\n")
    return [w for w in words if w.strip()] + [DEFAULT_NEGATIVE_PROMPT] * 4


def write_vae(out: Path, vae: torch.nn.Module, dtype: torch.dtype = torch.float32) -> Path:
    """The VAE file of a model directory (Wan's ``Wan2.1_VAE.pth`` layout), replacing any there.

    Written beside and renamed over the old file: the loader memory-maps it (``vae`` itself may still read
    from it) and an export hard-links it into other folders; truncating it in place would break both.
    """
    state = {k.removeprefix("model."): v for k, v in vae.state_dict().items()}
    path, partial = Path(out) / VAE_FILE, Path(out) / f".{VAE_FILE}.partial"
    torch.save(_cast(state, dtype), partial)
    os.replace(partial, path)
    return path


def write_model_dir(
    out: Path,
    spec: ModelSpec,
    *,
    dits: list[torch.nn.Module],
    vaces: list[torch.nn.Module] | None = None,
    text_encoder: torch.nn.Module,
    vae: torch.nn.Module,
    image_encoder: torch.nn.Module | None,
    tokenizer_dir: Path | None = None,
    shards: int = 1,
    dit_dtype: torch.dtype = torch.bfloat16,
    vae_dtype: torch.dtype = torch.float32,
) -> Path:
    """Write every file of a model directory; the tokenizer is copied from ``tokenizer_dir`` or trained.

    Dtypes follow the published files (DiT bf16, umT5 bf16, CLIP fp16, VAE fp32); the embedded model
    stores its VAE in bf16 (``vae_dtype``) to keep the package small.
    """
    import shutil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vaces = vaces or [None] * len(dits)
    folders = [out / d for d in spec.expert_dirs] or [out]
    if len(folders) != len(dits):
        raise ValueError(f"spec {spec.name} needs {len(folders)} DiT(s), got {len(dits)}")
    for folder, dit, vace in zip(folders, dits, vaces):
        write_dit_shards(folder, dit_state_dict(dit, vace), shards=shards, dtype=dit_dtype)
        (folder / DIT_CONFIG_FILE).write_text(json.dumps(spec.dit_config_json(), indent=2) + "\n")
    torch.save(_cast(text_encoder.state_dict(), torch.bfloat16), out / T5_FILE)
    write_vae(out, vae, vae_dtype)
    if image_encoder is not None:
        clip_state = {k.removeprefix("model."): v for k, v in image_encoder.state_dict().items()}
        torch.save(_cast(clip_state, torch.float16), out / CLIP_FILE)
    tok = out / TOKENIZER_DIR
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != tok.resolve():
        shutil.copytree(tokenizer_dir, tok, dirs_exist_ok=True)
    elif tokenizer_dir is None:
        write_tokenizer(tok, spec.text_encoder.vocab, spec.text_encoder.text_len)
    spec.save(out)
    return out


def write_random_model_dir(out: Path, spec: ModelSpec, seed: int = 0, shards: int = 1, **kwargs) -> Path:
    """A model directory with randomly initialised weights (tests; the embedded model before training)."""
    torch.manual_seed(seed)
    builders = C.component_builders(spec)
    n_dits = max(1, len(spec.expert_dirs))
    dits = [builders["dit"](False) for _ in range(n_dits)]
    vaces = [builders["vace"](False) for _ in range(n_dits)] if spec.vace is not None else None
    image_encoder = builders["image_encoder"](False) if spec.uses_clip else None
    return write_model_dir(
        out,
        spec,
        dits=dits,
        vaces=vaces,
        text_encoder=builders["text_encoder"](False),
        vae=builders["vae"](False),
        image_encoder=image_encoder,
        shards=shards,
        **kwargs,
    )
