"""FP8 self-attention on Hopper through cuDNN's FP8 flash-attention kernels (``nvidia-cudnn-frontend``).

Exact bf16 attention is ~70% of a Wan 14B DiT forward at 720p and runs at ~600 TFLOP/s on an H100; cuDNN's
FP8 kernel runs Q·Kᵀ and P·V on the FP8 tensor cores. Scaling is per tensor and needs no amax history:
- q, k, v are quantized to float8_e4m3fn with scale 448 / amax(tensor), computed on the GPU each call;
- k is first centred over the sequence (its mean key subtracted), as SageAttention does: softmax is unchanged
  (every score of a query shifts by the same amount) and the dot products lose less to rounding;
- the softmax probabilities P ∈ [0, 1] are quantized with scale 448;
- O = P·V is a convex combination of rows of v, so |O| ≤ amax(v) and scale 448 / amax(v) cannot overflow.
O is written in bf16 where cuDNN allows it (Blackwell), else in FP8 (Hopper) and dequantized here.

Training: the forward is FP8 and the backward is cuDNN's exact bf16 flash-attention backward, fed the FP8
forward's output and log-sum-exp. Both are torch custom ops, so ``torch.compile`` keeps them whole.
Head dims below 128 are zero-padded to 128 (zeros change no score and add output columns that are dropped).
Measured speed and accuracy: bench/results/fp8_attention.md.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import torch

from wanray.attention import _heads_last  # [b, s, n·d] -> [b, s, n, d]

E4M3_MAX = 448.0
PADDED_HEAD_DIM = 128


def _bnsd(shape: tuple[int, int, int, int]) -> tuple[list[int], list[int]]:
    """cuDNN's [b, n, s, d] view of a contiguous [b, s, n, d] buffer: (dims, strides)."""
    b, s, n, d = shape
    return [b, n, s, d], [s * n * d, d, n * d, 1]


@cache
def _handle(device_index: int):
    import cudnn

    with torch.cuda.device(device_index):
        return cudnn.create_handle()


@cache
def _unit_scales(device_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(descale_s, scale_s): P ∈ [0, 1] stored as P · 448."""
    device = torch.device("cuda", device_index)
    return (torch.full((1, 1, 1, 1), 1.0 / E4M3_MAX, device=device),
            torch.full((1, 1, 1, 1), E4M3_MAX, device=device))


@lru_cache(maxsize=64)
def _forward_graph(shape: tuple[int, int, int, int], device_index: int, attn_scale: float, bf16_out: bool):
    """A built cuDNN FP8 SDPA graph for contiguous [b, s, n, d] FP8 q, k, v; O in bf16 or FP8; (graph, tensors)."""
    import cudnn

    fp8, fp32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=fp8, intermediate_data_type=fp32, compute_data_type=fp32,
                          handle=_handle(device_index))
    dims, strides = _bnsd(shape)
    q, k, v = (graph.tensor(name=n, dim=dims, stride=strides, data_type=fp8) for n in ("q", "k", "v"))
    scalar = dict(dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=fp32)
    names = ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")
    scales = {n: graph.tensor(name=n, **scalar) for n in names}
    o, stats, amax_s, amax_o = graph.sdpa_fp8(
        q=q, k=k, v=v, **scales, generate_stats=True, attn_scale=attn_scale, use_causal_mask=False,
        name="fp8_attention",
    )
    o.set_output(True).set_dim(dims).set_stride(strides).set_data_type(cudnn.data_type.BFLOAT16 if bf16_out else fp8)
    b, n, s, _ = dims
    stats.set_output(True).set_dim([b, n, s, 1]).set_stride([n * s, s, 1, 1]).set_data_type(fp32)
    for amax in (amax_s, amax_o):
        amax.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(fp32)
    _build(graph)
    return graph, {"q": q, "k": k, "v": v, "o": o, "stats": stats, "amax_s": amax_s, "amax_o": amax_o, **scales}


_BF16_OUT: dict[int, bool] = {}  # per device: may O be bf16 with FP8 inputs? (H100, cuDNN 9.19: no; Blackwell: yes)


def bf16_output(shape: tuple[int, int, int, int], device_index: int, attn_scale: float) -> bool:
    """True where the kernel can write O in bf16 (no FP8 rounding of the output); asked once per device."""
    if device_index not in _BF16_OUT:
        try:
            _forward_graph(shape, device_index, attn_scale, True)
            _BF16_OUT[device_index] = True
        except Exception:  # cuDNN declines the graph: "not supported" on this GPU or version
            _BF16_OUT[device_index] = False
    return _BF16_OUT[device_index]


@lru_cache(maxsize=64)
def _backward_graph(shape: tuple[int, int, int, int], device_index: int, attn_scale: float):
    """cuDNN's bf16 flash-attention backward for contiguous [b, s, n, d] tensors; returns (graph, tensors)."""
    import cudnn

    bf16, fp32 = cudnn.data_type.BFLOAT16, cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=bf16, intermediate_data_type=fp32, compute_data_type=fp32,
                          handle=_handle(device_index))
    dims, strides = _bnsd(shape)
    t = {n: graph.tensor(name=n, dim=dims, stride=strides, data_type=bf16) for n in ("q", "k", "v", "o", "dO")}
    b, n, s, _ = dims
    t["stats"] = graph.tensor(name="stats", dim=[b, n, s, 1], stride=[n * s, s, 1, 1], data_type=fp32)
    dq, dk, dv = graph.sdpa_backward(q=t["q"], k=t["k"], v=t["v"], o=t["o"], dO=t["dO"], stats=t["stats"],
                                     attn_scale=attn_scale, use_causal_mask=False, name="attention_backward")
    for name, grad in (("dq", dq), ("dk", dk), ("dv", dv)):
        grad.set_output(True).set_dim(dims).set_stride(strides).set_data_type(bf16)
        t[name] = grad
    _build(graph)
    return graph, t


def _build(graph) -> None:
    import cudnn

    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    graph.build_plans()


def _execute(graph, pack: dict, device: torch.device) -> None:
    import cudnn

    handle = _handle(device.index)
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream(device).cuda_stream)
    workspace = torch.empty(graph.get_workspace_size(), device=device, dtype=torch.uint8)
    graph.execute(pack, workspace, handle=handle)


def _quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor float8_e4m3fn: (x · scale as FP8, descale = 1 / scale as a [1, 1, 1, 1] float32).

    Eager ops that read x twice and write no float32 copy: at 72,000 tokens x 5,120 each bf16 tensor is 0.74 GB,
    and a float32 round trip per tensor would cost ~0.3 s per 14B forward.
    """
    low, high = torch.aminmax(x)
    amax = torch.maximum(low.abs(), high.abs()).float().clamp(min=1e-12)
    return (x * (E4M3_MAX / amax)).to(torch.float8_e4m3fn), (amax / E4M3_MAX).reshape(1, 1, 1, 1)


def _pad_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[b, s, n, d] -> [b, s, n, 128] with zeros, for the kernel's supported head dims."""
    return torch.nn.functional.pad(x, (0, PADDED_HEAD_DIM - head_dim)) if head_dim < PADDED_HEAD_DIM else x


def _centred(k: torch.Tensor) -> torch.Tensor:
    """[b, s, n·d] keys minus their mean over the sequence (the mean accumulates in float32)."""
    return k - k.mean(dim=1, keepdim=True, dtype=torch.float32).to(k.dtype)


@torch.library.custom_op("wanray::fp8_attention_forward", mutates_args=())
def fp8_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, v [b, s, n·d] bf16 -> (out [b, s, n·d] in q's dtype, log-sum-exp stats [b, n, s, 1] float32)."""
    b, s, _ = q.shape
    head_dim = q.shape[2] // num_heads
    q4, k4, v4 = (_pad_heads(_heads_last(t, num_heads), head_dim) for t in (q, _centred(k), v))
    shape, attn_scale = tuple(q4.shape), 1.0 / math.sqrt(head_dim)
    (q8, dq), (k8, dk), (v8, dv) = (_quantize(t.contiguous()) for t in (q4, k4, v4))
    bf16_out = bf16_output(shape, q.device.index, attn_scale)
    graph, t = _forward_graph(shape, q.device.index, attn_scale, bf16_out)
    descale_s, scale_s = _unit_scales(q.device.index)
    o = torch.empty(shape, device=q.device, dtype=torch.bfloat16 if bf16_out else torch.float8_e4m3fn)
    stats = torch.empty((b, num_heads, s, 1), device=q.device, dtype=torch.float32)
    amax = torch.empty((2, 1, 1, 1, 1), device=q.device, dtype=torch.float32)
    # FP8 O: |O| <= amax(v) (a convex combination of v's rows), so O · 448 / amax(v) fits E4M3
    scale_o = scale_s / E4M3_MAX if bf16_out else 1.0 / dv
    pack = {t["q"]: q8, t["k"]: k8, t["v"]: v8, t["o"]: o, t["stats"]: stats, t["amax_s"]: amax[0],
            t["amax_o"]: amax[1], t["descale_q"]: dq, t["descale_k"]: dk, t["descale_v"]: dv,
            t["descale_s"]: descale_s, t["scale_s"]: scale_s, t["scale_o"]: scale_o}
    _execute(graph, pack, q.device)
    out = o[..., :head_dim].to(q.dtype)  # [b, s, n, d]
    if not bf16_out:
        out.mul_(dv.reshape(()))
    return out.reshape(b, s, num_heads * head_dim), stats


@fp8_attention_forward.register_fake
def _(q, k, v, num_heads):
    b, s, _ = q.shape
    return torch.empty_like(q), q.new_empty((b, num_heads, s, 1), dtype=torch.float32)


@torch.library.custom_op("wanray::attention_backward_bf16", mutates_args=())
def attention_backward_bf16(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            out: torch.Tensor, stats: torch.Tensor, num_heads: int
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cuDNN's bf16 flash-attention backward from the FP8 forward's out and stats: (dq, dk, dv) like q."""
    head_dim = q.shape[2] // num_heads
    # The keys the forward attended to. dk needs no correction for the centring: each query's score gradients
    # sum to zero over the keys, so the gradients of the centred keys already sum to zero over the sequence.
    k = _centred(k)
    tensors = [_pad_heads(_heads_last(x.to(torch.bfloat16), num_heads), head_dim).contiguous()
               for x in (q, k, v, out, grad_out)]
    shape = tuple(tensors[0].shape)
    graph, t = _backward_graph(shape, q.device.index, 1.0 / math.sqrt(head_dim))
    grads = [torch.empty(shape, device=q.device, dtype=torch.bfloat16) for _ in range(3)]
    pack = dict(zip((t["q"], t["k"], t["v"], t["o"], t["dO"]), tensors))
    pack.update({t["stats"]: stats.contiguous(), t["dq"]: grads[0], t["dk"]: grads[1], t["dv"]: grads[2]})
    _execute(graph, pack, q.device)
    return tuple(g[..., :head_dim].reshape(q.shape).to(q.dtype) for g in grads)


@attention_backward_bf16.register_fake
def _(grad_out, q, k, v, out, stats, num_heads):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, num_heads = inputs
    ctx.save_for_backward(q, k, v, *output)
    ctx.num_heads = num_heads


def _backward(ctx, grad_out, _grad_stats):
    q, k, v, out, stats = ctx.saved_tensors
    dq, dk, dv = attention_backward_bf16(grad_out.contiguous(), q, k, v, out, stats, ctx.num_heads)
    return dq, dk, dv, None


fp8_attention_forward.register_autograd(_backward, setup_context=_setup_context)


def fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The attention hook's signature: q, k, v [b, s, n·d] -> [b, s, n·d]."""
    return fp8_attention_forward(q, k, v, num_heads)[0]
