"""Switchable accelerations besides attention: TeaCache, FP8 weight storage, FP8 compute, LoRA hot-swapping.

Each is a switch with a CPU-safe path; an explicit request that cannot run raises with what to do.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import time
from pathlib import Path

import torch

from wanray import tea_cache
from wanray.attention import BackendUnavailable
from wanray.specs import NAMED_SPECS, ModelSpec

log = logging.getLogger(__name__)


# -- TeaCache --


def tea_cache_model_id(spec: ModelSpec, threshold: float | None) -> str | None:
    """DiffSynth's TeaCache coefficient set for this model, or an error if TeaCache was asked for and has none."""
    if threshold is None:
        return None
    if spec.tea_cache_model_id is None:
        calibrated = [n for n in NAMED_SPECS if NAMED_SPECS[n]().tea_cache_model_id]
        raise BackendUnavailable(
            f"TeaCache needs coefficients calibrated for the model; {spec.name!r} has none "
            f"(calibrated: {', '.join(calibrated)}). Drop --tea-cache for this model, or fit a set for its "
            "weights: python -m wanray.tea_cache calibrate --model ..."
        )
    tea_cache.install()
    if spec.tea_cache_model_id not in tea_cache.known_ids():
        raise BackendUnavailable(
            f"{spec.name!r} names TeaCache coefficients {spec.tea_cache_model_id!r}, which neither DiffSynth "
            f"({', '.join(tea_cache.diffsynth_ids())}) nor wanray ({', '.join(tea_cache.COEFFICIENTS)}) has"
        )
    log.info("TeaCache on: threshold %.3f, coefficients %s", threshold, spec.tea_cache_model_id)
    return spec.tea_cache_model_id


# -- FP8 weight storage --


class Fp8StorageLinear(torch.nn.Module):
    """A Linear whose weight is stored as float8 e4m3 with one scale per output row, upcast per call."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        self.compute_dtype = weight.dtype
        # scale each row to e4m3's range (max 448); keeps ~2 significant digits per weight.
        scale = weight.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / 448.0  # [out, 1]
        self.register_buffer("weight_fp8", (weight.float() / scale).to(torch.float8_e4m3fn))
        self.register_buffer("scale", scale)
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.weight_fp8.to(torch.float32) * self.scale).to(x.dtype)
        return torch.nn.functional.linear(x, weight, self.bias.to(x.dtype) if self.bias is not None else None)


def apply_fp8_storage(dit: torch.nn.Module) -> int:
    """Store the DiT blocks' linear weights in FP8 (attention, cross-attention, FFN). Returns layers changed."""
    changed = 0
    for block in dit.blocks:
        for name, module in list(block.named_modules()):
            if isinstance(module, torch.nn.Linear):
                parent_name, _, child = name.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                setattr(parent, child, Fp8StorageLinear(module))
                changed += 1
    log.info("FP8 weight storage: %d linear layers stored as float8_e4m3fn", changed)
    return changed


# -- FP8 compute (torchao float8): matmuls on float8 tensor cores --

FP8_MIN_CAPABILITY = (8, 9)  # float8 tensor cores: Ada (sm_89), Hopper (sm_90) and later
FP8_INSTALL = "pip install 'wanray[fp8]'"
# Tests only (CPU): skip the device check and let torchao emulate float8 in training
# (``Float8LinearConfig(emulate=True)``): the same rounding as on a GPU, no speed-up. Not a user option.
_EMULATE_FP8 = False


def check_fp8_compute(device: torch.device | str, switch: str = "FP8 compute") -> None:
    """Raise ``BackendUnavailable`` unless float8 matmuls can run on ``device`` and torchao is installed."""
    device = torch.device(device)
    need = f"{switch} needs a CUDA GPU of compute capability >= 8.9 (Ada or Hopper: L4, L40S, RTX 4090, H100, H200)"
    if not _EMULATE_FP8:
        if device.type != "cuda":
            raise BackendUnavailable(f"{need}; the device is {device}")
        capability = torch.cuda.get_device_capability(device)
        if capability < FP8_MIN_CAPABILITY:
            raise BackendUnavailable(
                f"{need}; {device} ({torch.cuda.get_device_name(device)}) has {capability[0]}.{capability[1]}"
            )
    if importlib.util.find_spec("torchao") is None:
        raise BackendUnavailable(f"{switch} needs torchao, which is not installed: {FP8_INSTALL}")


def fp8_eligible(module: torch.nn.Module, fqn: str) -> bool:
    """Whether a layer inside a block gets FP8 matmuls: a plain ``nn.Linear`` (not one converted already, not a
    LoRA wrapper) whose two dims are multiples of 16 (``torch._scaled_mm``), and not a peft LoRA adapter
    (``lora_A``/``lora_B``: rank-r matmuls gain nothing from FP8, and their gradients are what trains)."""
    return (type(module) is torch.nn.Linear and module.in_features % 16 == 0 and module.out_features % 16 == 0
            and not any(part.startswith("lora_") for part in fqn.split(".")))


def _blocks_of(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The repeated blocks of a DiT (``blocks``) or a VACE branch (``vace_blocks``; DiffSynth may wrap it)."""
    model = getattr(model, "vace", model)
    return model.blocks if hasattr(model, "blocks") else model.vace_blocks


def _count_eligible(block: torch.nn.Module) -> int:
    return sum(1 for name, module in block.named_modules() if fp8_eligible(module, name))


def apply_fp8_compute(model: torch.nn.Module) -> int:
    """FP8 matmuls in generation: torchao's dynamic float8 quantization of the linear layers in the blocks of a
    DiT or VACE branch (on its device). Weights become float8 e4m3 with one scale per output row (half the
    memory of bf16); activations are quantized per row at each call; the matmul runs on float8 tensor cores.
    The embeddings and the head stay in the compute dtype: they see few tokens, and the head's output is the
    prediction itself. Measured per 14B DiT forward at 720p on an H100 (``bench/gpu_dit.py``, with compile):
    1.13x faster, 20.9 instead of 36.2 GiB peak. Returns how many layers were converted.
    """
    weight = next(model.parameters())
    check_fp8_compute(weight.device, "--fp8-compute")
    if weight.dtype != torch.bfloat16:  # torchao's per-row float8 takes bfloat16 weights only
        raise ValueError(f"--fp8-compute needs the model in bfloat16 (--dtype auto or bfloat16), not {weight.dtype}")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    changed = 0
    for block in _blocks_of(model):
        changed += _count_eligible(block)
        quantize_(block, config, filter_fn=fp8_eligible)
    log.info("FP8 compute: %d linear layers quantized to float8_e4m3fn (per-row scales)", changed)
    return changed


def apply_fp8_training(models) -> int:
    """FP8 matmuls in training: torchao's ``convert_to_float8_training`` on the linear layers in the blocks of
    the given DiTs/VACE branches (``None`` entries skipped), with its default recipe (dynamic tensorwise scales;
    inputs and weights in e4m3, gradients in e5m2; the fastest of torchao's recipes). The forward and both
    backward matmuls of a converted layer run in float8; weights, their gradients and the optimizer stay in
    the compute dtype. Apply before ``compile_blocks``: torchao's casts are fast only when compiled.

    LoRA (peft): each adapted layer is a wrapper holding the frozen ``base_layer`` (a Linear) and the
    ``lora_A``/``lora_B`` adapters. The frozen base layers (and the layers no LoRA targets) are converted;
    the adapters stay in the compute dtype. torchao computes the weight-gradient matmul even for a frozen
    weight and autograd drops it: in eager mode that is a wasted matmul per layer, under ``torch.compile``
    (``strategy.compile``) it is dead code and removed, so use the two together.
    Returns how many layers were converted.
    """
    models = [m for m in models if getattr(m, "vace", m) is not None]
    for model in models:
        check_fp8_compute(next(model.parameters()).device, "strategy.fp8")
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    config = Float8LinearConfig(emulate=_EMULATE_FP8)
    changed = 0
    for model in models:
        for block in _blocks_of(model):
            changed += _count_eligible(block)
            convert_to_float8_training(block, config=config, module_filter_fn=fp8_eligible)
    log.info("FP8 training: %d linear layers run float8 matmuls%s", changed, " (emulated)" if _EMULATE_FP8 else "")
    return changed


# -- LoRA hot-swapping (DiffSynth's hot-load wrappers: base weights stay untouched) --


_LORA_KEY_PARTS = (".lora_A.", ".lora_B.", ".lora_down.", ".lora_up.")
_DIFF_SUFFIXES = {".diff": "weight", ".diff_b": "bias"}  # LightX2V / ComfyUI full deltas: weight, bias


def load_lora(pipe, dit: torch.nn.Module, path: Path, alpha: float) -> int:
    """Add a LoRA to ``dit``; returns how many layers it patched.

    Low-rank pairs (``lora_A/lora_B``, ``lora_down/lora_up``, optional ``alpha``; keys as Wan names them,
    with or without ``diffusion_model.``) go to DiffSynth's hot-load wrappers, so base weights never
    change. Full deltas (``<layer>.diff`` for a weight, ``<layer>.diff_b`` for a bias, as LightX2V's
    distillation LoRAs carry them) are added to the parameters, whose originals ``clear_loras`` puts back.
    Any other key is an error: a LoRA is never applied in part.
    """
    from diffsynth.core import LoRAHotLoadMixin
    from diffsynth.core.loader.file import load_state_dict

    wrapped = pipe.enable_lora_hot_loading(dit)
    if wrapped is not dit:
        raise RuntimeError("DiffSynth returned a new module for LoRA hot-loading; expected in-place wrapping")
    raw = load_state_dict(str(path), torch_dtype=pipe.torch_dtype, device=pipe.device)
    is_diff = {k: k.endswith(tuple(_DIFF_SUFFIXES)) for k in raw}
    diffs = {k.removeprefix("diffusion_model."): v for k, v in raw.items() if is_diff[k]}
    unknown = sorted(k for k in raw if not is_diff[k] and not k.endswith(".alpha")
                     and not any(part in k for part in _LORA_KEY_PARTS))
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} keys are neither LoRA pairs nor .diff/.diff_b deltas, e.g. "
                         f"{unknown[:3]}")
    lora = pipe.lora_loader(torch_dtype=pipe.torch_dtype, device=pipe.device).convert_state_dict(raw)
    if not lora and not diffs:
        raise ValueError(f"{path}: holds no LoRA weights (expected keys like blocks.0.self_attn.q.lora_A.weight)")
    patched = 0
    for module in dit.modules():
        if isinstance(module, LoRAHotLoadMixin):
            a, b = f"{module.name}.lora_A.weight", f"{module.name}.lora_B.weight"
            if a in lora and b in lora:
                module.lora_A_weights.append(lora[a] * alpha)
                module.lora_B_weights.append(lora[b])
                patched += 1
    targets = {k.rsplit(".lora_", 1)[0] for k in lora}
    if patched < len(targets):
        raise ValueError(f"{path}: {len(targets) - patched} of its {len(targets)} layers are not in the model")
    return patched + _add_deltas(dit, diffs, alpha, path)


def _add_deltas(dit: torch.nn.Module, diffs: dict[str, torch.Tensor], alpha: float, path: Path) -> int:
    """Add ``alpha *`` each full delta to its parameter, keeping the original on the module to restore."""
    params = dict(dit.named_parameters())
    for key, delta in diffs.items():
        layer, _, suffix = key.rpartition(".")
        name = f"{layer}.{_DIFF_SUFFIXES['.' + suffix]}"
        if name not in params:
            raise ValueError(f"{path}: {key} has no parameter {name} in the model")
        if params[name].shape != delta.shape:
            raise ValueError(f"{path}: {key} has shape {tuple(delta.shape)}, {name} is {tuple(params[name].shape)}")
        if type(params[name]) not in (torch.Tensor, torch.nn.Parameter):  # a torchao float8 weight (--fp8-compute)
            raise ValueError(f"{path}: {key} is a full delta for {name}, whose weight is float8-quantized "
                             "(--fp8-compute) and cannot be changed in place; load the model without --fp8-compute")
    for key, delta in diffs.items():
        layer, _, suffix = key.rpartition(".")
        module, attr = dit.get_submodule(layer), _DIFF_SUFFIXES["." + suffix]
        param = getattr(module, attr)
        backups = module.__dict__.setdefault("_wanray_originals", {})
        backups.setdefault(attr, param.detach().clone())
        with torch.no_grad():
            param.add_(delta.to(param.dtype) * alpha)
    return len(diffs)


def clear_loras(pipe) -> None:
    from diffsynth.core import LoRAHotLoadMixin

    for module in pipe.modules():
        if isinstance(module, LoRAHotLoadMixin):
            module.lora_A_weights.clear()
            module.lora_B_weights.clear()
        for attr, original in module.__dict__.pop("_wanray_originals", {}).items():
            with torch.no_grad():
                getattr(module, attr).copy_(original)


# -- CPU conv3d --


def _conv3d_as_conv2d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Conv3d as a sum over temporal taps of batched conv2d: same arithmetic. On some CPUs ~3x faster than torch's
    conv3d, which falls back to its slow im2col kernel there; on others (AVX-512 Xeons, 2026-12-06) 20-30% slower,
    so ``_fastest_conv3d`` times both once and calls this only on a CPU where it wins."""
    if self.groups != 1 or self.dilation != (1, 1, 1) or self.padding_mode != "zeros":
        return torch.nn.functional.conv3d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
    pt, ph, pw = self.padding
    if pt:
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, pt, pt))
    st, sh, sw = self.stride
    kt = weight.shape[2]
    b, c, t = x.shape[:3]
    t_out = (t - kt) // st + 1
    out = None
    for dt in range(kt):
        xt = x[:, :, dt : dt + st * (t_out - 1) + 1 : st]  # [B, C, T_out, H, W]
        xt = xt.transpose(1, 2).reshape(b * t_out, c, *x.shape[3:])
        y = torch.nn.functional.conv2d(xt, weight[:, :, dt], None, (sh, sw), (ph, pw))  # [B*T_out, O, H', W']
        out = y if out is None else out + y
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out.reshape(b, t_out, *out.shape[1:]).transpose(1, 2)  # [B, O, T_out, H', W']


CONV2D_MARGIN = 1.3  # where it helped it was ~3x; where it hurt, 0.8x


def _best_of(fn) -> float:
    """Seconds of ``fn()``: the minimum of three runs after one that warms up the kernel."""
    times = []
    for _ in range(4):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times[1:])


CPU_CONV3D_ENV = "WANRAY_CPU_CONV3D"  # conv3d or conv2d: pins the form; unset (or auto): timed once per process


@functools.cache
def conv2d_beats_conv3d_on_this_cpu() -> bool:
    """Whether the VAE's convolutions take the batched conv2d form on this CPU: ``$WANRAY_CPU_CONV3D`` if set, else
    timed both ways once per process (~0.1 s), since which is faster depends on the CPU (the demo clip on a 2-core
    AVX-512 Xeon took 28.4-28.7 s with torch's conv3d against 29.0-31.0 s without it). The two forms round
    differently, so a run spread over processes pins one form for all of them (``wanray.training.trainer``)."""
    pinned = os.environ.get(CPU_CONV3D_ENV, "auto")
    if pinned not in ("auto", "conv3d", "conv2d"):
        raise ValueError(f"${CPU_CONV3D_ENV}={pinned!r}: conv3d, conv2d or auto")
    if pinned != "auto":
        return pinned == "conv2d"
    conv = torch.nn.Conv3d(32, 32, 3)
    # [B, C, T, H, W]: a full-resolution block of the dim-32 VAE at 128x128 (4 frames + causal padding), where most
    # of its time goes; at 64x64 the answer can be the other way round
    x = torch.randn(1, 32, 6, 130, 130)

    with torch.no_grad():
        as_3d = _best_of(lambda: conv(x))
        as_2d = _best_of(lambda: _conv3d_as_conv2d(conv, x, conv.weight, conv.bias))
    # torch's own kernel unless ours clearly wins: a busy box can make a close call either way
    wins = as_2d * CONV2D_MARGIN < as_3d
    log.info("CPU VAE convolutions: %s (conv3d %.1f ms, batched conv2d %.1f ms)",
             "batched conv2d" if wins else "torch's conv3d", as_3d * 1e3, as_2d * 1e3)
    return wins


def _fastest_conv3d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The Conv3d forward ``speed_up_cpu_conv3d`` installs: the batched conv2d form on a CPU where it is clearly the
    faster, torch's conv3d elsewhere. The timing runs at the first CPU call, so a model that runs on a GPU never
    pays for it."""
    if x.device.type == "cpu" and conv2d_beats_conv3d_on_this_cpu():
        return _conv3d_as_conv2d(self, x, weight, bias)
    return torch.nn.functional.conv3d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def speed_up_cpu_conv3d(module: torch.nn.Module) -> int:
    """Route every Conv3d of ``module`` through ``_fastest_conv3d`` (torch's conv3d off the CPU)."""
    import types

    changed = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Conv3d):
            m._conv_forward = types.MethodType(_fastest_conv3d, m)
            changed += 1
    return changed


# -- CPU VAE in bfloat16 --

BF16_MARGIN = 1.3  # on an AVX512-BF16 CPU the whole VAE ran 1.98x faster; CPUs that emulate bf16 run it slower


@functools.cache
def bf16_beats_fp32_on_this_cpu() -> bool:
    """Time the VAE's largest convolution in float32 and in bfloat16, once per process (~0.3 s). CPUs with
    AVX512-BF16 or AMX run it about twice as fast at the same round-trip PSNR (bench/embedded_vae_cpu_dtype.py:
    25.80 dB both); CPUs without them emulate bf16, so this measures rather than assumes."""
    conv = torch.nn.Conv3d(32, 32, 3)
    speed_up_cpu_conv3d(conv)  # the form the VAE's own convolutions take on this CPU
    x = torch.randn(1, 32, 6, 130, 130)  # [B, C, T, H, W]: as in conv2d_beats_conv3d_on_this_cpu
    with torch.no_grad():
        fp32 = _best_of(lambda: conv(x))
        conv.to(torch.bfloat16)
        x = x.to(torch.bfloat16)
        bf16 = _best_of(lambda: conv(x))
    wins = bf16 * BF16_MARGIN < fp32
    log.info("CPU VAE dtype: %s (float32 %.1f ms, bfloat16 %.1f ms per convolution)",
             "bfloat16" if wins else "float32", fp32 * 1e3, bf16 * 1e3)
    return wins


def run_vae_in(vae: torch.nn.Module, dtype: torch.dtype) -> None:
    """Keep a DiffSynth ``WanVideoVAE``'s weights and arithmetic in ``dtype`` while the pipeline hands it, and gets
    back, tensors of its own dtype (a bfloat16 VAE in a float32 CPU pipeline, say). Wraps the inner model's
    encode/decode, which every path goes through: whole clips, DiffSynth's tiles, ours, batched encodes."""
    model = vae.model.to(dtype)
    cls = type(model)  # its methods looked up at each call, as they would be without this wrapper
    model.encode = lambda x, scale: cls.encode(model, x.to(dtype), scale).to(x.dtype)
    model.decode = lambda z, scale: cls.decode(model, z.to(dtype), scale).to(z.dtype)


# -- VAE: the all-zero clip VACE encodes on every generation --


def memoize_zero_clip_encodes(vae: torch.nn.Module) -> None:
    """Encode an all-zero clip once per shape. VACE encodes ``video x (1 - mask)`` on every generation, and with
    no mask (a pose video: the whole frame is generated) that clip is all zeros, so its latents depend only on
    its shape and the VAE's weights: one of the three or four VAE passes of a generation. Only for a VAE whose
    weights no longer change (generation), never one being trained."""
    original = vae.encode

    memo: dict[tuple, torch.Tensor] = {}

    def encode(videos, device, tiled=False, tile_size=(34, 34), tile_stride=(18, 16)):
        if all(not v.any() for v in videos):  # one pass over the pixels, against a whole encode
            # tile sizes only matter when tiled: the pipeline passes its own even to a whole-clip encode
            tiles = (tuple(tile_size), tuple(tile_stride)) if tiled else None
            key = (tuple(tuple(v.shape) for v in videos), videos[0].dtype, str(device), tiles)
            if key not in memo:
                memo[key] = original(videos, device, tiled=tiled, tile_size=tile_size, tile_stride=tile_stride)
            return memo[key].clone()
        return original(videos, device, tiled=tiled, tile_size=tile_size, tile_stride=tile_stride)

    vae.encode = encode  # an instance attribute shadows WanVideoVAE.encode


# -- DiT kernels our adapter owns: RoPE in float32, fused RMSNorm --

# Sequence-parallel shard of this process (set by wanray.parallel); RoPE slices the full-sequence table with it.
SP_STATE = {"rank": 0, "world": 1}
_ROPE_CACHE: dict = {}


def _cos_sin(freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of a complex RoPE table [S, 1, d/2], float32, computed once per forward."""
    key = (freqs.data_ptr(), freqs.shape, freqs.device)
    if _ROPE_CACHE.get("key") != key:
        _ROPE_CACHE.clear()
        _ROPE_CACHE.update(key=key, freqs=freqs, cos=freqs.real.float(), sin=freqs.imag.float())
    return _ROPE_CACHE["cos"], _ROPE_CACHE["sin"]


def rope_apply_fp32(x: torch.Tensor, freqs: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Wan's 3-D RoPE in float32 real arithmetic (DiffSynth uses float64 complex: slow on GPUs).

    x: [B, S_local, heads * head_dim]; freqs: complex [S, 1, head_dim / 2] for the whole sequence. Under
    sequence parallelism S_local = S / world (rows past the end, i.e. padding, rotate by identity).
    """
    b, s, _ = x.shape
    cos, sin = _cos_sin(freqs)  # [S, 1, d/2]
    if cos.shape[0] != s:
        start = SP_STATE["rank"] * s
        cos, sin = cos[start : start + s], sin[start : start + s]
        if cos.shape[0] < s:  # padded tail of the last shard
            pad = s - cos.shape[0]
            cos = torch.cat([cos, cos.new_ones(pad, *cos.shape[1:])])
            sin = torch.cat([sin, sin.new_zeros(pad, *sin.shape[1:])])
    xf = x.view(b, s, num_heads, -1, 2).float()  # [B, S, n, d/2, 2]
    x0, x1 = xf.unbind(-1)
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)  # cos/sin broadcast over B and n
    return out.flatten(2).to(x.dtype)


def apply_fast_dit_kernels(*models: torch.nn.Module) -> None:
    """float32 RoPE for every Wan attention, fused ``F.rms_norm`` for the given DiTs/VACE branches."""
    from diffsynth.models import wan_video_dit
    from diffsynth.models.wan_video_dit import set_to_torch_norm

    if not hasattr(wan_video_dit, "diffsynth_rope_apply"):
        wan_video_dit.diffsynth_rope_apply = wan_video_dit.rope_apply  # the original, for restore
    wan_video_dit.rope_apply = rope_apply_fp32
    set_to_torch_norm([m for m in models if m is not None])
    log.info("DiT kernels: float32 RoPE, fused RMSNorm")


def restore_diffsynth_kernels(*models: torch.nn.Module) -> None:
    """Back to DiffSynth's own RoPE and RMSNorm (benchmark baselines)."""
    from diffsynth.models import wan_video_dit

    wan_video_dit.rope_apply = getattr(wan_video_dit, "diffsynth_rope_apply", wan_video_dit.rope_apply)
    for model in models:
        for module in model.modules():
            if isinstance(module, wan_video_dit.RMSNorm):
                module.use_torch_norm = False


# -- torch.compile --


def compile_dit_blocks(pipe, cache_dir: str | None = None) -> int:
    """Regional ``torch.compile`` of a pipeline's DiTs and VACE branch (see ``compile_blocks``)."""
    return compile_blocks((pipe.dit, pipe.dit2, pipe.vace), cache_dir)


def _user_inductor_cache_dir() -> str:
    """``$TORCHINDUCTOR_CACHE_DIR`` when the user chose it, else ~/.cache/wanray/inductor (not /tmp)."""
    import os

    try:  # torch-internal; only tells torch's own default apart from a user's choice
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        default_cache_dir = None
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen and default_cache_dir and os.path.abspath(chosen) != os.path.abspath(default_cache_dir()):
        return chosen
    return os.path.expanduser("~/.cache/wanray/inductor")


def compile_blocks(models, cache_dir: str | None = None) -> int:
    """Regional ``torch.compile``: each DiT/VACE block class is compiled once and reused by every layer.

    ``models`` are DiTs (``blocks``) or VACE branches (``vace_blocks``); ``None`` entries are skipped.
    Inductor's on-disk caches (FX graph, autograd and autotuning) go to ``cache_dir`` (default
    ``$WANRAY_COMPILE_CACHE``, else a ``$TORCHINDUCTOR_CACHE_DIR`` the user set, else
    ~/.cache/wanray/inductor), so a restarted serve replica or training worker does not recompile.
    Returns how many blocks were compiled.
    """
    import os

    cache_dir = cache_dir or os.environ.get("WANRAY_COMPILE_CACHE") or _user_inductor_cache_dir()
    # set, not setdefault: torch writes its own default (/tmp/torchinductor_$USER) into the environment
    # the first time anything asks for the cache dir, which may already have happened in this process
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    count = 0
    for model in models:
        if getattr(model, "vace", model) is None:  # None, or DiffSynth's VACE wrapper without a branch
            continue
        for block in _blocks_of(model):
            block.compile(dynamic=False)
            count += 1
    log.info("torch.compile: %d DiT blocks (cache %s)", count, cache_dir)
    return count
