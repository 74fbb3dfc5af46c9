"""Typed configs for loading a model and generating a video."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from wanray.specs import DEFAULT_NEGATIVE_PROMPT

# The seed's product target: 5 s at 15 fps. Wan needs 4n+1 frames; 75 is not, 77 is (5.13 s).
DEFAULT_FPS = 15
DEFAULT_FRAMES = 77


EXPERTS = ("all", "high_noise", "low_noise")


@dataclass(kw_only=True, frozen=True)
class LoraRef:
    """A LoRA file, the strength to apply it with, and which DiT it is for.

    ``expert`` matters for Wan2.2's two experts, whose LoRAs are trained separately: ``high_noise``
    (the first DiT), ``low_noise`` (the second), ``all``, or ``auto``: the expert a wanray export names in its
    metadata (``wanray.expert``), else all (``resolved``).
    """

    path: Path
    alpha: float = 1.0
    expert: str = "auto"

    def __post_init__(self) -> None:
        if self.expert not in (*EXPERTS, "auto"):
            raise ValueError(f"LoRA expert must be one of {', '.join(EXPERTS)} or auto, got {self.expert!r}")

    def resolved(self) -> "LoraRef":
        """This LoRA with ``auto`` decided from the file: a Wan2.2 expert's export goes to that expert only."""
        if self.expert != "auto":
            return self
        expert = "all"
        if Path(self.path).suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(self.path), framework="pt") as f:
                named = (f.metadata() or {}).get("wanray.expert", "")
            expert = named if named in EXPERTS else "all"
        return dataclasses.replace(self, expert=expert)

    @classmethod
    def parse(cls, text: str) -> "LoraRef":
        """``PATH[:ALPHA][@EXPERT]`` (as on the command line), e.g. ``style.safetensors:0.8@high_noise``."""
        expert = "auto"
        head, at, tail = text.rpartition("@")
        if at and tail in EXPERTS:
            text, expert = head, tail
        path, sep, alpha = text.rpartition(":")
        if sep and path and _is_float(alpha):
            return cls(path=Path(path), alpha=float(alpha), expert=expert)
        return cls(path=Path(text), expert=expert)


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


@dataclass(kw_only=True, frozen=True)
class ModelConfig:
    """Which model to load, where, and with which accelerations.

    Attributes:
        model: a spec name (``embedded``, ``wan2.1-i2v-14b-720p``, ``wan2.2-i2v-a14b``) or a model directory.
        model_spec: the spec of ``model`` when it is a directory that cannot be recognised by itself.
        device: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:N``.
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``bfloat16``, ``float16``, ``float32``.
        vae_dtype: the VAE's dtype; ``auto`` is ``dtype``, except bfloat16 for a float32 pipeline on a CPU that
            runs bfloat16 convolutions faster (timed once per process): ~2x faster VAE passes at the same PSNR.
        attention: attention backend (see ``wanray.attention``), ``auto`` picks the best available.
        fp8_storage: keep the DiT's linear weights in float8 (e4m3) and upcast per layer: ~half the memory,
            no speed-up; any device.
        fp8_compute: FP8 matmuls (torchao float8, ``accel.apply_fp8_compute``) for the DiT/VACE blocks' linear
            layers: float8 weights (~half the memory, as fp8_storage) and faster matmuls. Needs a CUDA GPU of
            compute capability >= 8.9 and ``pip install 'wanray[fp8]'``. Pick one of fp8_storage and fp8_compute.
        fast_kernels: replace DiffSynth's float64 RoPE and unfused RMSNorm with float32 RoPE and
            ``F.rms_norm`` (same results to within float32 rounding); off only for baselines.
        compile: ``torch.compile`` the DiT blocks (regional: one compiled block reused by all layers).
        ulysses_degree / cfg_degree: spread one generation over ulysses x cfg processes (one per GPU,
            started by torchrun or a Ray placement group); see ``wanray.parallel``.
    """

    model: str = "embedded"
    model_spec: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    vae_dtype: str = "auto"
    attention: str = "auto"
    fp8_storage: bool = False
    fp8_compute: bool = False
    fast_kernels: bool = True
    compile: bool = False
    ulysses_degree: int = 1
    cfg_degree: int = 1

    def __post_init__(self) -> None:
        if self.fp8_storage and self.fp8_compute:
            raise ValueError("fp8_storage and fp8_compute both store the DiT weights in float8; pick one "
                             "(fp8_compute also runs the matmuls in float8, on GPUs of compute capability >= 8.9)")


@dataclass(kw_only=True, frozen=True)
class GenerationConfig:
    """One image-to-video request. ``None`` sizes and steps take the model's defaults.

    Attributes:
        image: the first frame (a photo of the person): a path or a PIL image.
        prompt: what the video shows.
        negative_prompt: what to steer away from (default: the Wan team's standard negative prompt).
        end_image: optional last frame.
        control_video: optional control video (e.g. the pose skeleton), read frame by frame.
        vace_video / vace_video_mask / vace_reference_image: VACE conditioning, as DiffSynth takes it.
        seed: noise seed; the same seed gives the same frames on CPU.
        height / width: multiples of 16.
        frames: 4n+1 (Wan's VAE compresses time 4x); 77 at 15 fps is 5.1 s.
        fps: frame rate of the written video.
        steps: denoising steps; cfg: classifier-free guidance scale (1 disables the negative pass).
        sampler: "euler" (default) or "renoise", the step Wan2.1 4-step distillation LoRAs need
            (``wanray.sampling``; ``wanray.sampling.few_step`` sets steps, cfg, shift and sampler for them).
        tea_cache: TeaCache relative-L1 threshold (None: off); needs calibrated coefficients for the model.
        tiled_vae: encode/decode the VAE in overlapping tiles (less memory, same result up to blending).
        tile_size / tile_stride: tiles in latent units (x8 pixels). None (default): one tile per GPU of the
            replica (``vae_tiling.plan_tiles``), the whole frame on one GPU (720p x 77 decodes in ~10 GiB);
            DiffSynth's small tiles where that would not fit in the GPU's free memory.
            DiffSynth's (and the seed's) fixed tiles are ``vae_tiling.DIFFSYNTH_TILES``: (30, 52) / (15, 26).
    """

    image: object
    prompt: str
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    end_image: object | None = None
    control_video: object | None = None
    vace_video: object | None = None
    vace_video_mask: object | None = None
    vace_reference_image: object | None = None
    vace_scale: float = 1.0
    seed: int = 0
    height: int | None = None
    width: int | None = None
    frames: int = DEFAULT_FRAMES
    fps: int = DEFAULT_FPS
    steps: int | None = None
    cfg: float | None = None
    sigma_shift: float | None = None
    sampler: str = "euler"
    tea_cache: float | None = None
    tiled_vae: bool = True
    tile_size: tuple[int, int] | None = None
    tile_stride: tuple[int, int] | None = None
    loras: tuple[LoraRef, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if (self.tile_size is None) != (self.tile_stride is None):
            raise ValueError("give tile_size and tile_stride together (or neither, for one tile per GPU)")
        if self.tile_size is not None and not all(0 < st <= si for si, st in zip(self.tile_size, self.tile_stride)):
            raise ValueError(f"tile_stride {self.tile_stride} must be positive and at most tile_size {self.tile_size}")
