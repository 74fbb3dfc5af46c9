"""The generation adapter: our typed configs in, DiffSynth's ``WanVideoPipeline`` does the denoising.

    from wanray import GenerationConfig, ModelConfig, WanGenerator
    gen = WanGenerator.load(ModelConfig(model="embedded"))
    result = gen.generate(GenerationConfig(image="photo.jpg", prompt="an anime girl dancing"))
    result.save("fairy.mp4")
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from PIL import Image

from wanray import accel
from wanray.attention import BackendUnavailable, install_attention
from wanray.config import GenerationConfig, LoraRef, ModelConfig
from wanray.inputs import InvalidInput, PreparedRequest, prepare
from wanray.sampling import sampler_installed
from wanray.parallel import ParallelConfig, apply_parallel, check_parallel, init_parallel, local_device
from wanray.loading import WanComponents, load_model_dir
from wanray.specs import ModelSpec, get_spec, spec_for_dir, NAMED_SPECS
from wanray.vae_tiling import device_resident_tiling, plan_tiles
from wanray.video import write_mp4

log = logging.getLogger(__name__)

EMBEDDED_MODEL_DIR = Path(__file__).parent / "embedded_model"
# Where `--model wan2.1-i2v-14b-720p` looks for user-supplied weights: $WANRAY_MODEL_DIR/<published folder>.
PUBLISHED_FOLDERS = {"wan2.1-i2v-14b-720p": "Wan2.1-I2V-14B-720P", "wan2.2-i2v-a14b": "Wan2.2-I2V-A14B"}

ProgressFn = Callable[[int, int], None]  # (steps done, total steps)


# fp8-stored linears are not nn.Linear, so DiffSynth's LoRA wrappers and .diff deltas cannot reach them
FP8_STORAGE_NO_LORA = "LoRAs cannot be applied to fp8-stored weights (--fp8-storage); drop one of the two"


def resolve_model(model: str, model_spec: str | None = None) -> tuple[Path, ModelSpec]:
    """A spec name or a directory -> (directory, spec). Never downloads anything."""
    if model == "embedded":
        return EMBEDDED_MODEL_DIR, spec_for_dir(EMBEDDED_MODEL_DIR)
    if model in NAMED_SPECS:
        root = os.environ.get("WANRAY_MODEL_DIR")
        folder = PUBLISHED_FOLDERS[model]
        if root and (Path(root) / folder).is_dir():
            return Path(root) / folder, get_spec(model)
        raise FileNotFoundError(
            f"the {model} weights are not bundled and are never downloaded; download Wan-AI/{folder} yourself, "
            f"then pass --model /path/to/{folder} (or set WANRAY_MODEL_DIR to the folder that holds {folder}/)"
        )
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"--model {model!r} is neither a known spec ({', '.join(NAMED_SPECS)}) nor a directory")
    return path, get_spec(model_spec) if model_spec else spec_for_dir(path)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    return dev


DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _named_dtype(name: str, setting: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"{setting} must be auto, bfloat16, float16 or float32, got {name!r}") from None


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # float32 on a CPU: bf16 matmuls and convolutions are emulated (slow) on CPUs without AVX512-BF16/AMX
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _named_dtype(dtype, "dtype")


def resolve_vae_dtype(vae_dtype: str, device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The VAE's dtype: ``auto`` is the pipeline's ``dtype``, except a float32 pipeline on a CPU whose bfloat16
    convolutions are measured faster (``accel.bf16_beats_fp32_on_this_cpu``): the VAE is ~90% of a CPU
    generation's time and loses nothing measurable in bfloat16."""
    if vae_dtype == "auto":
        if device.type == "cpu" and dtype == torch.float32 and accel.bf16_beats_fp32_on_this_cpu():
            return torch.bfloat16
        return dtype
    return _named_dtype(vae_dtype, "vae_dtype")


@dataclass
class GenerationResult:
    frames: list[Image.Image]  # T RGB frames of height x width
    fps: int
    seconds: float
    info: dict = field(default_factory=dict)  # what actually ran: backends, switches, sizes

    def save(self, path: Path | str) -> Path:
        return write_mp4(self.frames, path, self.fps)


class WanGenerator:
    """A loaded Wan I2V pipeline (base model plus swappable LoRAs)."""

    def __init__(self, pipe, components: WanComponents, device: torch.device, dtype: torch.dtype, attention: str):
        self.pipe = pipe
        self.spec = components.spec
        self.components = components
        self.device = device
        self.dtype = dtype
        self.attention = attention
        self.vae_dtype = dtype
        self.fp8_storage = False
        self.fp8_compute = False
        self.compiled = False
        self.parallel = ParallelConfig()
        self.loras: tuple[LoraRef, ...] = ()

    @classmethod
    def load(cls, config: ModelConfig = ModelConfig()) -> "WanGenerator":
        """Check and load the model's files, select accelerations, build the pipeline."""
        parallel = ParallelConfig(ulysses_degree=config.ulysses_degree, cfg_degree=config.cfg_degree)
        root, spec = resolve_model(config.model, config.model_spec)
        if parallel.world_size > 1:
            check_parallel(parallel, spec, int(os.environ.get("WORLD_SIZE", 1)), torch.cuda.device_count())
            device = local_device() if config.device == "auto" else resolve_device(config.device)
            init_parallel(parallel, device)
        else:
            device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        if config.fp8_compute:  # before minutes of loading
            accel.check_fp8_compute(device, "--fp8-compute")
            if dtype != torch.bfloat16:
                raise ValueError(f"--fp8-compute needs --dtype bfloat16 (torchao's per-row float8), got {config.dtype}")
        attention = install_attention(config.attention, device)
        started = time.perf_counter()
        components = load_model_dir(root, spec, dtype)
        pipe = build_pipeline(components, device, dtype)
        generator = cls(pipe, components, device, dtype, attention)
        generator.vae_dtype = resolve_vae_dtype(config.vae_dtype, device, dtype)
        if generator.vae_dtype != dtype:
            accel.run_vae_in(pipe.vae, generator.vae_dtype)
        if config.fast_kernels or parallel.world_size > 1:
            accel.apply_fast_dit_kernels(pipe.dit, pipe.dit2, pipe.vace, pipe.vace2)
        if config.fp8_storage:
            for dit in components.dits:
                accel.apply_fp8_storage(dit)
            generator.fp8_storage = True
        if config.fp8_compute:
            for model in (*components.dits, *components.vaces):
                accel.apply_fp8_compute(model)
            generator.fp8_compute = True
        if parallel.world_size > 1:
            apply_parallel(pipe, parallel)
        # VAE tiles blend on the device (and split over the ranks of a multi-GPU group), not on the CPU.
        device_resident_tiling(pipe.vae, torch.distributed.group.WORLD if parallel.world_size > 1 else None)
        generator.parallel = parallel
        if config.compile:
            accel.compile_dit_blocks(pipe)
            generator.compiled = True
        log.info("model %s ready on %s in %.1f s", spec.name, device, time.perf_counter() - started)
        return generator

    # -- LoRA --
    def set_loras(self, loras: Sequence[LoraRef]) -> None:
        """Make exactly these LoRAs active (hot-swapped: the base weights are never changed)."""
        for lora in loras:
            if not Path(lora.path).is_file():
                raise FileNotFoundError(f"LoRA file {str(lora.path)!r} does not exist")
        if loras and self.fp8_storage:
            raise InvalidInput(FP8_STORAGE_NO_LORA)
        loras = tuple(lora.resolved() for lora in loras)  # "auto": the expert the file's metadata names
        if loras == self.loras:
            return
        accel.clear_loras(self.pipe)
        self.loras = ()
        try:
            for lora in loras:
                for dit in self._dits(lora.expert):
                    accel.load_lora(self.pipe, dit, Path(lora.path), lora.alpha)
        except BaseException:
            accel.clear_loras(self.pipe)  # never run with part of a LoRA set
            raise
        self.loras = loras
        log.info("LoRAs active: %s", ", ".join(f"{l.path.name}:{l.alpha}@{l.expert}" for l in loras) or "none")

    def _dits(self, expert: str = "all") -> list[torch.nn.Module]:
        """The DiTs a LoRA for ``expert`` goes to (Wan2.2: dit = high-noise expert, dit2 = low-noise)."""
        if expert != "all" and self.pipe.dit2 is None:
            raise InvalidInput(f"a LoRA for the {expert} expert needs a two-expert model (Wan2.2); {self.spec.name} has one DiT")
        chosen = {"all": (self.pipe.dit, self.pipe.dit2), "high_noise": (self.pipe.dit,), "low_noise": (self.pipe.dit2,)}
        return [d for d in chosen[expert] if d is not None]

    # -- generation --
    def generate(
        self,
        config: GenerationConfig,
        progress: ProgressFn | None = None,
        show_progress: bool = False,
    ) -> GenerationResult:
        request = prepare(config, self.spec)
        tea_model = accel.tea_cache_model_id(self.spec, config.tea_cache)
        cfg_parallel = self.parallel.cfg_degree == 2
        if cfg_parallel and request.cfg == 1:
            raise InvalidInput("cfg_degree 2 runs the two guidance passes in parallel; it needs cfg != 1")
        if cfg_parallel and tea_model:
            raise InvalidInput("TeaCache keeps one cache per guidance pass and cannot run with cfg_degree 2")
        self.set_loras(config.loras)
        started = time.perf_counter()
        with sampler_installed(self.pipe, config.sampler, config.seed):
            frames = self._run_pipe(config, request, cfg_parallel, tea_model, progress, show_progress)
        seconds = time.perf_counter() - started
        info = self._info(request, config, tea_model, seconds)
        log.info("generated %s", info)
        return GenerationResult(frames=list(frames), fps=config.fps, seconds=seconds, info=info)

    def _run_pipe(self, config: GenerationConfig, request: PreparedRequest, cfg_parallel: bool, tea_model: str | None,
                  progress: ProgressFn | None, show_progress: bool) -> list:
        return self.pipe(
            prompt=config.prompt,
            negative_prompt=config.negative_prompt,
            input_image=request.image,
            end_image=request.end_image,
            control_video=request.control_video,
            vace_video=request.vace_video,
            vace_video_mask=request.vace_video_mask,
            vace_reference_image=request.vace_reference_image,
            vace_scale=config.vace_scale,
            seed=config.seed,
            rand_device="cpu",
            height=request.height,
            width=request.width,
            num_frames=request.frames,
            cfg_scale=request.cfg,
            cfg_merge=cfg_parallel,
            num_inference_steps=request.steps,
            sigma_shift=request.sigma_shift,
            switch_DiT_boundary=self.spec.expert_boundary,
            **self._vae_tiles(request, config),
            tea_cache_l1_thresh=config.tea_cache,
            tea_cache_model_id=tea_model or "",
            progress_bar_cmd=_progress_wrapper(progress, show_progress),
        )

    def _vae_tiles(self, request: PreparedRequest, config: GenerationConfig) -> dict:
        """DiffSynth's tiled / tile_size / tile_stride: as asked, or one tile per GPU of the replica."""
        if config.tile_size is not None:
            return {"tiled": config.tiled_vae, "tile_size": tuple(config.tile_size),
                    "tile_stride": tuple(config.tile_stride)}
        factor = self.pipe.vae.upsampling_factor  # pixels per latent
        free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
        size, stride = plan_tiles(request.height, request.width, request.frames, self.parallel.world_size, free,
                                  factor)
        whole = size == (request.height // factor, request.width // factor)  # one tile: decode untiled
        return {"tiled": config.tiled_vae and not whole, "tile_size": size, "tile_stride": stride}

    def _info(self, request: PreparedRequest, config: GenerationConfig, tea_model: str | None, seconds: float) -> dict:
        tiles = self._vae_tiles(request, config)
        return {
            "model": self.spec.name,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "vae_dtype": str(self.vae_dtype).removeprefix("torch."),
            "attention": self.attention,
            "tea_cache": {"threshold": config.tea_cache, "model_id": tea_model} if tea_model else None,
            "tiled_vae": {k: list(v) for k, v in tiles.items() if k != "tiled"} if tiles["tiled"] else None,
            "fp8_storage": self.fp8_storage,
            "fp8_compute": self.fp8_compute,
            "compiled": self.compiled,
            "parallel": {"ulysses": self.parallel.ulysses_degree, "cfg": self.parallel.cfg_degree},
            "loras": [{"path": str(l.path), "alpha": l.alpha, "expert": l.expert} for l in self.loras],
            "height": request.height,
            "width": request.width,
            "frames": request.frames,
            "steps": request.steps,
            "sampler": config.sampler,
            "cfg": request.cfg,
            "seed": config.seed,
            "seconds": round(seconds, 3),
        }


def build_pipeline(components: WanComponents, device: torch.device, dtype: torch.dtype):
    """Put loaded modules into DiffSynth's WanVideoPipeline, as its ``from_pretrained`` would."""
    from diffsynth.models.wan_video_text_encoder import HuggingfaceTokenizer
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    spec = components.spec
    pipe = WanVideoPipeline(device=str(device), torch_dtype=dtype)
    pipe.text_encoder = components.text_encoder.to(device)
    pipe.vae = components.vae.to(device)
    accel.memoize_zero_clip_encodes(pipe.vae)
    pipe.image_encoder = components.image_encoder.to(device) if components.image_encoder is not None else None
    pipe.dit = components.dits[0].to(device)
    pipe.dit2 = components.dits[1].to(device) if len(components.dits) > 1 else None
    if components.vaces:
        pipe.vace = components.vaces[0].to(device)
        pipe.vace2 = components.vaces[1].to(device) if len(components.vaces) > 1 else None
    pipe.height_division_factor = pipe.width_division_factor = pipe.vae.upsampling_factor * 2
    pipe.tokenizer = HuggingfaceTokenizer(
        name=str(components.tokenizer_dir), seq_len=spec.text_encoder.text_len, clean="whitespace"
    )
    pipe.vram_management_enabled = False
    return pipe


def _progress_wrapper(progress: ProgressFn | None, show: bool):
    """DiffSynth calls ``progress_bar_cmd(timesteps)``: report each step, optionally with a tqdm bar."""

    def wrap(timesteps: Iterable):
        items = list(timesteps)
        total = len(items)
        iterator = items
        if show:
            from tqdm import tqdm

            iterator = tqdm(items, desc="denoising", unit="step")
        for i, item in enumerate(iterator):
            yield item
            if progress is not None:
                progress(i + 1, total)

    return wrap
