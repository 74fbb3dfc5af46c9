"""Check a model directory against its spec, then load its components.

The same code path loads a 14B checkpoint and the embedded miniature. Every file is checked before
any weight is loaded: a missing shard, an unexpected or missing key, or a wrong shape is an error that
names the file and what was expected. ``.pth`` files load with ``weights_only=True``; safetensors
headers are read without loading data. DiT files may be FP8 (float8 weights with scales, as the
community FP8 releases ship them; see ``fp8_checkpoint.py``). Nothing here reaches for a model hub.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wanray import components as C
from wanray import fp8_checkpoint
from wanray.accel import speed_up_cpu_conv3d
from wanray.specs import (
    CLIP_FILE,
    DIT_INDEX_FILE,
    DIT_SHARD_GLOB,
    T5_FILE,
    TOKENIZER_DIR,
    VAE_FILE,
    ModelSpec,
)

log = logging.getLogger(__name__)

_SHARD_RE = re.compile(r"diffusion_pytorch_model-(\d{5})-of-(\d{5})\.safetensors$")


class ModelFileError(ValueError):
    """A model file is missing or does not match the spec."""


@dataclass(kw_only=True)
class ModelFiles:
    """The files of one model directory, checked."""

    root: Path
    dit_shards: list[list[Path]]  # one shard list per DiT (Wan2.2: high-noise, then low-noise)
    text_encoder: Path
    vae: Path
    image_encoder: Path | None
    tokenizer_dir: Path
    # state dicts already read during the check (.pth files), reused by the loader
    _cache: dict[Path, dict] = field(default_factory=dict, repr=False)


def find_dit_shards(folder: Path) -> list[Path]:
    """The DiT safetensors of a folder, all present: ``-0000N-of-0000M`` shards, or one unsharded file."""
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: DiT folder is missing")
    single = folder / "diffusion_pytorch_model.safetensors"
    shards = sorted(p for p in folder.glob(DIT_SHARD_GLOB) if _SHARD_RE.search(p.name))
    if not shards:
        if single.is_file():
            return [single]
        raise ModelFileError(
            f"{folder}: no DiT weights; expected diffusion_pytorch_model-00001-of-0000N.safetensors shards "
            "(or diffusion_pytorch_model.safetensors)"
        )
    totals = {int(_SHARD_RE.search(p.name).group(2)) for p in shards}
    if len(totals) != 1:
        raise ModelFileError(f"{folder}: DiT shards disagree on the shard count: {sorted(p.name for p in shards)}")
    total = totals.pop()
    have = {int(_SHARD_RE.search(p.name).group(1)) for p in shards}
    missing = [f"diffusion_pytorch_model-{i:05d}-of-{total:05d}.safetensors" for i in range(1, total + 1) if i not in have]
    if missing:
        raise ModelFileError(f"{folder}: missing DiT shard(s) {', '.join(missing)} (have {len(have)} of {total})")
    index = folder / DIT_INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        named = set(weight_map.values())
        unknown = named - {p.name for p in shards}
        if unknown:
            raise ModelFileError(f"{index}: names shard(s) not present: {', '.join(sorted(unknown))}")
    return shards


def discover(root: Path, spec: ModelSpec) -> ModelFiles:
    root = Path(root)
    if not root.is_dir():
        raise ModelFileError(f"model directory {root} does not exist")
    dit_dirs = [root / d for d in spec.expert_dirs] or [root]

    def need(path: Path, what: str) -> Path:
        if not path.exists():
            raise ModelFileError(f"{path}: missing {what}")
        return path

    tokenizer_dir = need(root / TOKENIZER_DIR, f"tokenizer folder ({TOKENIZER_DIR}/ with tokenizer.json)")
    # both are read when the pipeline is built, after every weight has loaded: checked now
    need(tokenizer_dir / "tokenizer_config.json", "tokenizer_config.json of the umT5 tokenizer (its padding token)")
    tokenizer = need(tokenizer_dir / "tokenizer.json", "tokenizer.json of the umT5 tokenizer")
    try:
        parsed = json.loads(tokenizer.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{tokenizer}: not valid JSON ({e})") from e
    if not isinstance(parsed, dict) or not {"model", "added_tokens"} <= parsed.keys():
        raise ModelFileError(f"{tokenizer}: not a Hugging Face tokenizers file (no 'model' or 'added_tokens')")
    return ModelFiles(
        root=root,
        dit_shards=[find_dit_shards(d) for d in dit_dirs],
        text_encoder=need(root / T5_FILE, "umT5 text encoder"),
        vae=need(root / VAE_FILE, "Wan VAE"),
        image_encoder=need(root / CLIP_FILE, "CLIP image encoder") if spec.uses_clip else None,
        tokenizer_dir=tokenizer_dir,
    )


# -- reading keys and shapes --


def _safetensors_shapes(paths: list[Path]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in paths:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    if key in shapes:
                        raise ModelFileError(f"{path}: key {key!r} also appears in another shard")
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except ModelFileError:
            raise
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise ModelFileError(f"{path}: not a readable safetensors file ({e})") from e
    return shapes


def read_pth(path: Path) -> dict:
    """A ``.pth`` state dict, read with ``weights_only=True`` (no pickled code runs) and memory-mapped."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise ModelFileError(f"{path}: cannot be read as a weights-only PyTorch checkpoint ({e})") from e
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
            obj = next(iter(obj.values()))  # {"state_dict": {...}} / {"model_state": {...}}
        if not all(isinstance(v, torch.Tensor) for v in obj.values()) if isinstance(obj, dict) else True:
            raise ModelFileError(f"{path}: expected a dict of tensors (a state dict)")
    return obj


def compare_keys(
    where: str, found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]
) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} wrong shape(s), e.g. {k}: file has {list(found[k])}, expected {list(expected[k])}"
        )
    if problems:
        raise ModelFileError(f"{where}: does not match the spec: " + "; ".join(problems))


def check_model_dir(root: Path, spec: ModelSpec) -> ModelFiles:
    """Find and check every file of a model directory; raise ModelFileError naming the first bad one."""
    files = discover(root, spec)
    builders = C.component_builders(spec)
    for shards in files.dit_shards:
        where = f"{shards[0].parent} (DiT: {', '.join(p.name for p in shards)})"
        try:
            shapes, fp8_scales = fp8_checkpoint.split_scales(_safetensors_shapes(shards), where)
        except ValueError as e:
            raise ModelFileError(str(e)) from e
        if fp8_scales:
            where += f" (FP8, {fp8_scales} scales)"
        compare_keys(where, C.convert_dit_keys(shapes), C.expected_shapes(builders["dit"](True)))
        if spec.vace is not None:
            compare_keys(where + " VACE", C.convert_vace_keys(shapes), C.expected_shapes(builders["vace"](True)))
    pth_files = [("text_encoder", files.text_encoder, C.convert_t5_keys), ("vae", files.vae, C.convert_vae_keys)]
    if files.image_encoder is not None:
        pth_files.append(("image_encoder", files.image_encoder, C.convert_clip_keys))
    for name, path, converter in pth_files:
        state = read_pth(path)
        files._cache[path] = state
        shapes = {k: tuple(v.shape) for k, v in converter(state).items()}
        compare_keys(str(path), shapes, C.expected_shapes(builders[name](True)))
    return files


# -- loading --


@dataclass(kw_only=True)
class WanComponents:
    """Loaded modules, ready to be put into a DiffSynth pipeline."""

    spec: ModelSpec
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    dits: list[torch.nn.Module]
    vaces: list[torch.nn.Module]
    image_encoder: torch.nn.Module | None
    tokenizer_dir: Path


def _load_module(builder, state_dict: dict, dtype: torch.dtype) -> torch.nn.Module:
    module = builder(True)
    state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    module.load_state_dict(state_dict, assign=True, strict=True)
    return module.eval().requires_grad_(False)


def _load_safetensors(paths: list[Path]) -> dict:
    from safetensors.torch import load_file

    state: dict = {}
    for path in paths:
        state.update(load_file(str(path), device="cpu"))
    return state


def load_components(files: ModelFiles, spec: ModelSpec, dtype: torch.dtype = torch.float32) -> WanComponents:
    """Load checked files into DiffSynth modules on the CPU, in ``dtype``."""
    builders = C.component_builders(spec)

    def pth(path: Path) -> dict:
        return files._cache.pop(path, None) or read_pth(path)

    dits, vaces = [], []
    for shards in files.dit_shards:
        state = fp8_checkpoint.dequantize(_load_safetensors(shards), dtype)
        dits.append(_load_module(builders["dit"], C.convert_dit_keys(state), dtype))
        if spec.vace is not None:
            vaces.append(_load_module(builders["vace"], C.convert_vace_keys(state), dtype))
        del state
    for dit in dits:
        _restore_rope(dit, spec)
    vae = _load_module(builders["vae"], C.convert_vae_keys(pth(files.vae)), dtype)
    speed_up_cpu_conv3d(vae)
    components = WanComponents(
        spec=spec,
        text_encoder=_load_module(builders["text_encoder"], C.convert_t5_keys(pth(files.text_encoder)), dtype),
        vae=vae,
        dits=dits,
        vaces=vaces,
        image_encoder=(
            _load_module(builders["image_encoder"], C.convert_clip_keys(pth(files.image_encoder)), dtype)
            if files.image_encoder is not None
            else None
        ),
        tokenizer_dir=files.tokenizer_dir,
    )
    log.info("loaded %s from %s (%d DiT%s, dtype %s)", spec.name, files.root, len(dits), "s" * (len(dits) > 1), dtype)
    return components


def _restore_rope(dit: torch.nn.Module, spec: ModelSpec) -> None:
    """RoPE tables are plain tensors computed at construction; rebuild them if built on meta."""
    from diffsynth.models.wan_video_dit import precompute_freqs_cis_3d

    if any(f.device.type == "meta" for f in dit.freqs):
        dit.freqs = precompute_freqs_cis_3d(spec.dit.head_dim)


def load_model_dir(root: Path, spec: ModelSpec, dtype: torch.dtype = torch.float32) -> WanComponents:
    return load_components(check_model_dir(root, spec), spec, dtype)


def load_vae(root: Path, spec: ModelSpec, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The VAE of a model directory alone, checked against ``spec``: what training the VAE needs, so a folder
    without its DiT (a GPU host's carry) still serves."""
    path = Path(root) / VAE_FILE
    if not path.is_file():
        raise ModelFileError(f"{path}: missing Wan VAE")
    builder = C.component_builders(spec)["vae"]
    state = C.convert_vae_keys(read_pth(path))
    compare_keys(str(path), {k: tuple(v.shape) for k, v in state.items()}, C.expected_shapes(builder(True)))
    vae = _load_module(builder, state, dtype)
    speed_up_cpu_conv3d(vae)
    return vae
