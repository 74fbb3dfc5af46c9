"""Model specs: the architecture and file layout of each Wan image-to-video model we know.

A spec says what the files of a model directory must hold (which components, which shapes), so a
directory is checked against it before any weight is loaded. Named specs:

- ``wan2.1-i2v-14b-720p``: Wan-AI/Wan2.1-I2V-14B-720P (one DiT, CLIP image encoder).
- ``wan2.2-i2v-a14b``: Wan-AI/Wan2.2-I2V-A14B (high-noise and low-noise expert DiTs, no CLIP).
- ``embedded``: the miniature Wan2.1-I2V with a VACE branch that ships inside this package.

A directory may carry its own spec as ``wanray_spec.json`` (our exports and the embedded model do);
published 14B directories are recognised from their ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# File names exactly as Wan-AI publishes them.
DIT_SHARD_GLOB = "diffusion_pytorch_model*.safetensors"
DIT_INDEX_FILE = "diffusion_pytorch_model.safetensors.index.json"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
VAE_FILE = "Wan2.1_VAE.pth"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
TOKENIZER_DIR = "google/umt5-xxl"
SPEC_FILE = "wanray_spec.json"
DIT_CONFIG_FILE = "config.json"

# The Wan team's default negative prompt, used by their examples and by DiffSynth-Studio's.
DEFAULT_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


@dataclass(kw_only=True, frozen=True)
class DiTArch:
    """Hyper-parameters of DiffSynth's ``WanModel`` (the original Wan DiT)."""

    dim: int
    in_dim: int
    ffn_dim: int
    out_dim: int = 16
    text_dim: int
    freq_dim: int = 256
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_heads: int
    num_layers: int
    has_image_input: bool
    require_clip_embedding: bool = True

    def __post_init__(self) -> None:
        head_dim = self.dim // self.num_heads
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of num_heads ({self.num_heads})")
        if (head_dim // 3) % 2:
            raise ValueError(
                f"head_dim // 3 must be even for Wan's 3-D RoPE split, but head_dim = {self.dim} / "
                f"{self.num_heads} = {head_dim} gives {head_dim // 3}"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def model_kwargs(self) -> dict[str, Any]:
        kwargs = dataclasses.asdict(self)
        kwargs["patch_size"] = list(self.patch_size)
        return kwargs

    def num_params(self) -> int:
        """Parameter count (weights and biases), for memory planning."""
        d, f, L = self.dim, self.ffn_dim, self.num_layers
        block = 8 * d * d + 8 * d + 2 * d * f + f + d + 4 * d + 2 * d + 6 * d
        if self.has_image_input:
            block += 2 * d * d + 2 * d + d
        p = L * block
        p += self.in_dim * d * (self.patch_size[0] * self.patch_size[1] * self.patch_size[2]) + d
        p += self.text_dim * d + d + d * d + d  # text embedding
        p += self.freq_dim * d + d + d * d + d  # time embedding
        p += d * 6 * d + 6 * d  # time projection
        p += d * self.out_dim * 4 + self.out_dim * 4 + 2 * d  # head
        if self.has_image_input:
            p += 2 * 1280 + 1280 * 1280 + 1280 + 1280 * d + d + 2 * d
        return p


@dataclass(kw_only=True, frozen=True)
class VaceArch:
    """The VACE branch (``VaceWanModel``): extra DiT blocks whose hints are added after given layers."""

    layers: tuple[int, ...]
    in_dim: int = 96  # 16 inactive + 16 reactive latent channels + 64 mask channels (8x8 pixels)


@dataclass(kw_only=True, frozen=True)
class TextEncoderArch:
    """umT5 encoder (``WanTextEncoder``); ``dim`` must equal the DiT's ``text_dim``."""

    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    text_len: int = 512  # tokens per prompt (padded), the DiT's context length

    def model_kwargs(self) -> dict[str, Any]:
        kwargs = dataclasses.asdict(self)
        kwargs.pop("text_len")
        return kwargs


@dataclass(kw_only=True, frozen=True)
class VAEArch:
    """Wan2.1 VAE (``VideoVAE_``): 8x spatial, 4x temporal compression into 16 channels."""

    dim: int = 96
    z_dim: int = 16
    # The decoder's widths in units of ``dim`` (its stages run mult[-1], then mult reversed, from the latents to
    # the pixels); None: the encoder's (1, 2, 4, 4), as Wan's. A wider decoder decodes the same latents
    # (``wanray.training.vae_widen``), so a DiT trained on them stays valid.
    decoder_dim_mult: tuple[int, int, int, int] | None = None

    @property
    def decoder_mult(self) -> tuple[int, ...]:
        return self.decoder_dim_mult or (1, 2, 4, 4)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VAEArch":
        """From ``dataclasses.asdict``'s dict after a JSON round trip (which makes the tuple a list)."""
        mult = data.get("decoder_dim_mult")
        return cls(**{**data, "decoder_dim_mult": tuple(mult) if mult is not None else None})


@dataclass(kw_only=True, frozen=True)
class ImageEncoderArch:
    """The vision tower of open-clip XLM-RoBERTa ViT-H/14; width 1280 and 257 tokens are fixed by the DiT."""

    vision_layers: int = 32
    vision_heads: int = 16
    vision_mlp_ratio: float = 4
    embed_dim: int = 1024

    def model_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True, frozen=True)
class ModelSpec:
    """Everything needed to check and build one Wan I2V model from its files."""

    name: str
    dit: DiTArch
    text_encoder: TextEncoderArch = field(default_factory=TextEncoderArch)
    vae: VAEArch = field(default_factory=VAEArch)
    image_encoder: ImageEncoderArch | None = field(default_factory=ImageEncoderArch)
    vace: VaceArch | None = None
    # Wan2.2 mixture of experts: sub-folders holding the high-noise then the low-noise DiT.
    expert_dirs: tuple[str, ...] = ()
    # Timestep fraction (of 1000) below which the low-noise expert takes over (Wan2.2 I2V: 0.9).
    expert_boundary: float = 0.9
    # TeaCache coefficient set calibrated for this model's weights, if any: DiffSynth's or wanray.tea_cache's.
    tea_cache_model_id: str | None = None
    # Generation defaults that suit the model.
    default_height: int = 720
    default_width: int = 1280
    default_steps: int = 50
    default_cfg: float = 5.0
    default_sigma_shift: float = 5.0

    def __post_init__(self) -> None:
        if self.text_encoder.dim != self.dit.text_dim:
            raise ValueError(
                f"text encoder dim ({self.text_encoder.dim}) must equal the DiT's text_dim ({self.dit.text_dim})"
            )
        if self.dit.require_clip_embedding and self.dit.has_image_input and self.image_encoder is None:
            raise ValueError(f"spec {self.name!r}: the DiT takes CLIP features but no image_encoder is given")
        if self.vace is not None and max(self.vace.layers) >= self.dit.num_layers:
            raise ValueError(
                f"VACE layers {self.vace.layers} must be below the DiT's num_layers ({self.dit.num_layers})"
            )

    @property
    def uses_clip(self) -> bool:
        return self.image_encoder is not None and self.dit.has_image_input and self.dit.require_clip_embedding

    # -- JSON round trip (wanray_spec.json) --
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        data = dict(data)
        try:
            data["dit"] = DiTArch(**{**data["dit"], "patch_size": tuple(data["dit"]["patch_size"])})
            data["text_encoder"] = TextEncoderArch(**data.get("text_encoder", {}))
            data["vae"] = VAEArch.from_dict(data.get("vae", {}))
            if data.get("image_encoder") is not None:
                data["image_encoder"] = ImageEncoderArch(**data["image_encoder"])
            if data.get("vace") is not None:
                data["vace"] = VaceArch(**{**data["vace"], "layers": tuple(data["vace"]["layers"])})
            data["expert_dirs"] = tuple(data.get("expert_dirs", ()))
            return cls(**data)
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a valid wanray model spec: {e}") from e

    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / SPEC_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    def dit_config_json(self) -> dict[str, Any]:
        """The ``config.json`` Wan-AI publishes next to the DiT shards."""
        d = self.dit
        return {
            "_class_name": "WanModel",
            "dim": d.dim,
            "eps": d.eps,
            "ffn_dim": d.ffn_dim,
            "freq_dim": d.freq_dim,
            "in_dim": d.in_dim,
            "model_type": "i2v",
            "num_heads": d.num_heads,
            "num_layers": d.num_layers,
            "out_dim": d.out_dim,
            "text_len": self.text_encoder.text_len,
        }


def wan21_i2v_14b_720p() -> ModelSpec:
    """Wan-AI/Wan2.1-I2V-14B-720P."""
    return ModelSpec(
        name="wan2.1-i2v-14b-720p",
        dit=DiTArch(
            dim=5120, in_dim=36, ffn_dim=13824, text_dim=4096, num_heads=40, num_layers=40, has_image_input=True
        ),
        tea_cache_model_id="Wan2.1-I2V-14B-720P",
    )


def wan22_i2v_a14b() -> ModelSpec:
    """Wan-AI/Wan2.2-I2V-A14B: two 14B experts, no CLIP image encoder."""
    return ModelSpec(
        name="wan2.2-i2v-a14b",
        dit=DiTArch(
            dim=5120,
            in_dim=36,
            ffn_dim=13824,
            text_dim=4096,
            num_heads=40,
            num_layers=40,
            has_image_input=False,
            require_clip_embedding=False,
        ),
        image_encoder=None,
        expert_dirs=("high_noise_model", "low_noise_model"),
        expert_boundary=0.9,
        default_cfg=3.5,
    )


def embedded() -> ModelSpec:
    """The miniature Wan2.1-I2V + VACE that ships with wanray (runs on a 2-core CPU)."""
    return ModelSpec(
        name="embedded",
        dit=DiTArch(
            dim=192, in_dim=36, ffn_dim=512, text_dim=128, freq_dim=64, num_heads=4, num_layers=6,
            has_image_input=True,
        ),
        text_encoder=TextEncoderArch(
            vocab=2048, dim=128, dim_attn=128, dim_ffn=256, num_heads=4, num_layers=2, text_len=64
        ),
        vae=VAEArch(dim=32),
        # No transformer blocks: patch + position embeddings only (width 1280, 257 tokens, as the DiT needs).
        # I2V never runs the tower's last block anyway, so a 1-block tower would be dead weight.
        image_encoder=ImageEncoderArch(vision_layers=0, vision_heads=16, vision_mlp_ratio=0.25, embed_dim=16),
        vace=VaceArch(layers=(0, 2, 4)),
        default_height=128,
        default_width=128,
        default_steps=12,
        # No guidance: the DiT was trained with every prompt, never an empty one, so CFG's unconditional pass is a
        # direction it never learned. At cfg 3 the colours shift (a blue top turns orange) and SSIM drops from
        # 0.84-0.87 to 0.72-0.75 on unseen entries (training/README.md).
        default_cfg=1.0,
        # fitted on the bundled weights by wanray.tea_cache (whose constants say how)
        tea_cache_model_id="wanray-embedded",
    )


NAMED_SPECS = {
    "wan2.1-i2v-14b-720p": wan21_i2v_14b_720p,
    "wan2.2-i2v-a14b": wan22_i2v_a14b,
    "embedded": embedded,
}


def model_for_other_processes(model: str) -> str:
    """``model`` as Ray workers and replicas, which run in folders of their own, must see it: a folder named relative
    to here becomes its absolute path; a spec name stays a name, even beside a folder of that name."""
    folder = model not in NAMED_SPECS and Path(model).expanduser().is_dir()
    return str(Path(model).expanduser().resolve()) if folder else model


def get_spec(name: str) -> ModelSpec:
    try:
        return NAMED_SPECS[name]()
    except KeyError:
        raise ValueError(f"unknown model spec {name!r}; known specs: {', '.join(NAMED_SPECS)}") from None


def spec_for_dir(model_dir: Path) -> ModelSpec:
    """The spec of a model directory: its ``wanray_spec.json``, else the published spec its layout matches."""
    model_dir = Path(model_dir)
    own = model_dir / SPEC_FILE
    if own.is_file():
        try:
            return ModelSpec.from_dict(json.loads(own.read_text()))
        except (ValueError, TypeError, KeyError) as e:  # bad JSON, or fields that are not a spec's
            raise ValueError(f"{own}: not a valid model spec ({type(e).__name__}: {e})") from e
    for build in (wan22_i2v_a14b, wan21_i2v_14b_720p):
        spec = build()
        config_dirs = [model_dir / d for d in spec.expert_dirs] or [model_dir]
        configs = [d / DIT_CONFIG_FILE for d in config_dirs]
        if all(c.is_file() for c in configs) and all(_config_matches(c, spec) for c in configs):
            return spec
    raise ValueError(
        f"cannot tell which model {model_dir} holds: it has no {SPEC_FILE}, and no {DIT_CONFIG_FILE} matching "
        f"{', '.join(NAMED_SPECS)}. Pass the spec name explicitly (e.g. --model-spec wan2.1-i2v-14b-720p)."
    )


def _config_matches(config_path: Path, spec: ModelSpec) -> bool:
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    expected = spec.dit_config_json()
    keys = ("dim", "ffn_dim", "in_dim", "num_heads", "num_layers", "out_dim")
    return all(config.get(k) == expected[k] for k in keys)
