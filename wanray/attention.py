"""Attention backends for the Wan DiT, chosen by us rather than by whatever happens to import.

DiffSynth's DiT calls one module-level function, ``wan_video_dit.flash_attention(q, k, v, num_heads)``,
and picks FA3 > FA2 > sageattention > SDPA by what imports (so sageattention installed crashes CPU runs).
``install_attention(name)`` points that hook at the backend we selected instead.

Backends: ``sdpa`` (torch SDPA, lets torch choose its kernel), ``sdpa-flash``, ``sdpa-cudnn``,
``sdpa-efficient``, ``sdpa-math`` (SDPA pinned to one kernel), ``sage`` (sageattention), ``flash2``
(flash-attn), ``flash3`` (FlashAttention-3, ``flash_attn_interface``), ``xformers``, and ``cudnn-fp8``
(cuDNN's FP8 flash attention on Hopper, ``wanray.fp8_attention``). ``auto`` picks the fastest exact backend
available for the device (on CPU always ``sdpa``); FP8 attention changes outputs, so it is only ever asked for.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

# q, k, v: [batch, seq, heads * head_dim] -> [batch, seq, heads * head_dim]
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


class BackendUnavailable(RuntimeError):
    """An explicitly requested acceleration cannot run here."""


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    needs_cuda: bool
    module: str | None  # the import that must succeed
    install: str  # how to get it
    build: Callable[[], AttentionFn]
    min_capability: tuple[int, int] = (0, 0)  # CUDA compute capability the kernels need
    quantized: bool = False  # lossy (FP8): never chosen by ``auto``, passes the acceleration gate when asked for
    trainable: bool = True  # has a backward pass (sageattention is forward-only: no gradient would flow)

    def available(self, device: torch.device) -> bool:
        if self.needs_cuda and device.type != "cuda":
            return False
        if self.min_capability > (0, 0) and not _has_capability(device, self.min_capability):
            return False
        return self.module is None or importlib.util.find_spec(self.module) is not None


def _has_capability(device: torch.device, needed: tuple[int, int]) -> bool:
    return needed == (0, 0) or (torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= needed)


def _heads_first(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, s, _ = x.shape
    return x.view(b, s, num_heads, -1).transpose(1, 2)  # [b, n, s, d]


def _heads_last(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, s, _ = x.shape
    return x.view(b, s, num_heads, -1)  # [b, s, n, d]


def _merge_heads_first(x: torch.Tensor) -> torch.Tensor:
    b, n, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, n * d)


def _merge_heads_last(x: torch.Tensor) -> torch.Tensor:
    b, s, n, d = x.shape
    return x.reshape(b, s, n * d)


def _sdpa(kernel: str | None) -> Callable[[], AttentionFn]:
    def build() -> AttentionFn:
        context = None
        if kernel is not None:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            backend = {
                "flash": SDPBackend.FLASH_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "math": SDPBackend.MATH,
            }[kernel]
            context = lambda: sdpa_kernel([backend])  # noqa: E731

        def attention(q, k, v, num_heads):
            q, k, v = (_heads_first(t, num_heads) for t in (q, k, v))
            if context is None:
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                with context():
                    out = F.scaled_dot_product_attention(q, k, v)
            return _merge_heads_first(out)

        return attention

    return build


def _sage() -> AttentionFn:
    from sageattention import sageattn

    def attention(q, k, v, num_heads):
        q, k, v = (_heads_first(t, num_heads) for t in (q, k, v))
        return _merge_heads_first(sageattn(q, k, v, tensor_layout="HND"))

    return attention


def _flash2() -> AttentionFn:
    import flash_attn

    def attention(q, k, v, num_heads):
        q, k, v = (_heads_last(t, num_heads) for t in (q, k, v))
        return _merge_heads_last(flash_attn.flash_attn_func(q, k, v))

    return attention


def _flash3() -> AttentionFn:
    import flash_attn_interface

    def attention(q, k, v, num_heads):
        q, k, v = (_heads_last(t, num_heads) for t in (q, k, v))
        out = flash_attn_interface.flash_attn_func(q, k, v)
        return _merge_heads_last(out[0] if isinstance(out, tuple) else out)

    return attention


def _xformers() -> AttentionFn:
    import xformers.ops

    def attention(q, k, v, num_heads):
        q, k, v = (_heads_last(t, num_heads) for t in (q, k, v))
        return _merge_heads_last(xformers.ops.memory_efficient_attention(q, k, v))

    return attention


def _cudnn_fp8() -> AttentionFn:
    from wanray.fp8_attention import fp8_attention

    exact = _sdpa(None)()

    def attention(q, k, v, num_heads):
        if k.shape[1] != q.shape[1]:  # cross-attention to 512 text / 257 image tokens: ~0.1% of the FLOPs, exact
            return exact(q, k, v, num_heads)
        return fp8_attention(q, k, v, num_heads)

    return attention


BACKENDS: dict[str, AttentionBackend] = {
    b.name: b
    for b in [
        AttentionBackend("sdpa", False, None, "(built into torch)", _sdpa(None)),
        AttentionBackend("sdpa-math", False, None, "(built into torch)", _sdpa("math")),
        AttentionBackend("sdpa-flash", True, None, "a CUDA build of torch", _sdpa("flash")),
        AttentionBackend("sdpa-cudnn", True, None, "a CUDA build of torch with cuDNN", _sdpa("cudnn")),
        AttentionBackend("sdpa-efficient", True, None, "a CUDA build of torch", _sdpa("efficient")),
        AttentionBackend("sage", True, "sageattention", "pip install 'wanray[gpu]' (sageattention)", _sage,
                         trainable=False),
        AttentionBackend("flash2", True, "flash_attn", "pip install flash-attn --no-build-isolation", _flash2),
        AttentionBackend(
            "flash3", True, "flash_attn_interface",
            "build FlashAttention-3 from github.com/Dao-AILab/flash-attention (hopper/ folder)", _flash3,
        ),
        AttentionBackend("xformers", True, "xformers", "pip install xformers", _xformers),
        AttentionBackend("cudnn-fp8", True, "cudnn", "pip install nvidia-cudnn-frontend (needs a Hopper GPU or newer)",
                         _cudnn_fp8, min_capability=(9, 0), quantized=True),
    ]
}

# Fastest first on Hopper. Measured (bench/gpu_dit.py, H100, 72,000 tokens, 40x128 heads, bf16): sdpa 597
# TFLOP/s (torch picks cuDNN there), sdpa-cudnn 594, sage 1.0.6 461, sdpa-flash 366, sdpa-efficient 179.
# FlashAttention-3 was not installable on the host (source build only) and is listed first untested.
AUTO_ORDER_CUDA = ("flash3", "sdpa")


def select_attention(name: str, device: torch.device | str) -> AttentionBackend:
    """The backend to run: ``auto`` -> best available; an explicit name must be available or this raises."""
    device = torch.device(device)
    if name == "auto":
        order = AUTO_ORDER_CUDA if device.type == "cuda" else ("sdpa",)
        for candidate in order:
            if BACKENDS[candidate].available(device):
                return BACKENDS[candidate]
        return BACKENDS["sdpa"]
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}")
    backend = BACKENDS[name]
    if backend.needs_cuda and device.type != "cuda":
        raise BackendUnavailable(
            f"attention backend {name!r} needs a CUDA GPU, but the device is {device}; use --attention auto or sdpa"
        )
    if device.type == "cuda" and torch.cuda.is_available() and not _has_capability(device, backend.min_capability):
        need = ".".join(map(str, backend.min_capability))
        raise BackendUnavailable(f"attention backend {name!r} needs a GPU of compute capability >= {need}, "
                                 f"this one is {torch.cuda.get_device_name(device)}; use --attention auto")
    if not backend.available(device):
        raise BackendUnavailable(f"attention backend {name!r} is not installed: {backend.install}")
    return backend


def install_attention(name: str, device: torch.device | str) -> str:
    """Route every attention call of DiffSynth's Wan DiT (and VACE) through the selected backend."""
    from diffsynth.models import wan_video_dit

    backend = select_attention(name, device)
    fn = backend.build()

    def flash_attention(q, k, v, num_heads, compatibility_mode=False):
        return fn(q, k, v, num_heads)

    if not hasattr(wan_video_dit, "diffsynth_flash_attention"):
        wan_video_dit.diffsynth_flash_attention = wan_video_dit.flash_attention  # the original, for restore
    wan_video_dit.flash_attention = flash_attention
    log.info("attention: %s (requested %s, device %s)", backend.name, name, torch.device(device))
    return backend.name


def restore_diffsynth_attention() -> None:
    """DiffSynth's own selection again (FA3 > FA2 > sage > SDPA by what imports): benchmark baselines."""
    from diffsynth.models import wan_video_dit

    wan_video_dit.flash_attention = getattr(wan_video_dit, "diffsynth_flash_attention", wan_video_dit.flash_attention)
