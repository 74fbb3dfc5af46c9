"""One LoRA training step of the 14B Wan2.1-I2V DiT at 720p with gradient checkpointing: ours vs DiffSynth's.

    python bench/train_step.py                 # GPU: 1280x720, 49 frames, random 14B weights, no files needed
    python bench/train_step.py --frames 33 --steps 2
    python bench/train_step.py --compile --fp8 --only-ours   # + torch.compile and FP8 (torchao float8) rows
    python bench/train_step.py --compile --fp8 --fp8-attention --only-ours   # + cuDNN FP8 attention rows
    python bench/train_step.py --embedded [--device cuda] [--batches 1,8,32]  # embedded model samples/s per batch

Baseline: DiffSynth's own training approach at the same shape: a ``DiffusionTrainingModule`` whose
``switch_pipe_to_training_mode`` adds the peft LoRA (rank 32, q,k,v,o,ffn.0,ffn.2, bf16 weights),
``FlowMatchSFTLoss`` with ``use_gradient_checkpointing``, torch AdamW (as ``launch_training_task``),
DiffSynth's attention choice with sageattention excluded (it has no backward: see gpu()), float64 RoPE and
RMSNorm. Ours: ``wanray.training.step.micro_step``, the
loop's step, with our attention selection, float32 RoPE and fused RMSNorm (``accel.apply_fast_dit_kernels``),
fused AdamW on float32 master copies of the bf16 LoRA weights; optionally ``torch.compile`` per block and
FP8 matmuls for the frozen base linears (``strategy.fp8``: ``accel.apply_fp8_training``, torchao float8).
Prints a table of seconds per step, ratio to the baseline measured in the same run, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from train_common import free, random_dit, random_inputs, timed  # noqa: E402

TARGETS = ("q", "k", "v", "o", "ffn.0", "ffn.2")


def diffsynth_step(arch, frames, height, width):
    """DiffSynth: DiffusionTrainingModule + FlowMatchSFTLoss, as its Wan LoRA example trains."""
    from diffsynth.diffusion.loss import FlowMatchSFTLoss
    from diffsynth.diffusion.training_module import DiffusionTrainingModule
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    pipe = WanVideoPipeline(device="cuda", torch_dtype=torch.bfloat16)
    pipe.dit = random_dit(arch)

    class WanLoraModule(DiffusionTrainingModule):
        def __init__(self):
            super().__init__()
            self.pipe = pipe
            self.switch_pipe_to_training_mode(pipe, lora_base_model="dit", lora_target_modules=",".join(TARGETS),
                                              lora_rank=32)

        def forward(self, inputs):
            return FlowMatchSFTLoss(self.pipe, **inputs)

    module = WanLoraModule()
    optimizer = torch.optim.AdamW(module.trainable_modules(), lr=1e-4, weight_decay=0.01)
    inputs = random_inputs(arch, frames, height, width)
    inputs.update(use_gradient_checkpointing=True, use_gradient_checkpointing_offload=False)

    def step():
        loss = module(dict(inputs))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def wanray_step(arch, frames, height, width, compile_blocks: bool, attention: str = "auto",
                recompute_attention: bool = True, fp8: bool = False):
    """Ours: the loop's micro_step on a DiTModule with the same LoRA, through DDPEngine (one GPU, no wrapper)."""
    from wanray import accel
    from wanray.attention import install_attention
    from wanray.training.config import LoraSettings, OptimSettings
    from wanray.training.engine import DDPEngine
    from wanray.training.flow import FlowMatching
    from wanray.training.model import DiTModule, add_lora
    from wanray.training.step import micro_step

    backend = install_attention(attention, "cuda")
    dit = random_dit(arch)
    if hasattr(accel, "apply_fast_dit_kernels"):
        accel.apply_fast_dit_kernels(dit)
    add_lora(dit, LoraSettings(rank=32, target_modules=TARGETS), seed=0)
    if fp8:  # as build_training_model orders it: after the LoRA, before compile
        accel.apply_fp8_training((dit,))
    if compile_blocks:
        for block in dit.blocks:
            block.compile(dynamic=False)
    module = DiTModule(dit, None, checkpointing=True, offload=False, recompute_attention=recompute_attention).cuda()
    engine = DDPEngine(module, OptimSettings(lr=1e-4), total_steps=100, dtype=torch.bfloat16,
                       device=torch.device("cuda"), prepare=False)
    flow = FlowMatching()
    inputs = random_inputs(arch, frames, height, width)
    counter = iter(range(10**6))

    def step():
        micro_step(engine, flow, inputs, seed=0, step=next(counter), rank=0, micro=0, grad_accum=1,
                   dtype=torch.bfloat16, boundary=True, loss_divisor=1)

    return step, backend


def restore_diffsynth(dit_module=None):
    """Put DiffSynth's own attention and RoPE back (our installs patch module globals)."""
    from diffsynth.models import wan_video_dit

    if hasattr(wan_video_dit, "diffsynth_rope_apply"):
        wan_video_dit.rope_apply = wan_video_dit.diffsynth_rope_apply
    if not hasattr(wan_video_dit, "_bench_original_attention"):
        wan_video_dit._bench_original_attention = wan_video_dit.flash_attention
    wan_video_dit.flash_attention = wan_video_dit._bench_original_attention


def gpu(args) -> None:
    from wanray.specs import wan21_i2v_14b_720p

    arch = wan21_i2v_14b_720p().dit
    tokens = ((args.frames - 1) // 4 + 1) * (args.height // 16) * (args.width // 16)
    print(f"# LoRA r32 step, Wan2.1-I2V-14B DiT (random weights), {args.width}x{args.height}x{args.frames} "
          f"= {tokens:,} tokens, gradient checkpointing, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| step | s/step | speed-up vs DiffSynth | peak allocated GiB | peak reserved GiB |")
    print("| --- | --- | --- | --- | --- |")
    rows = []

    def show(row):
        rows.append(row)
        name, seconds, alloc, reserved = row
        print(f"| {name} | {seconds:.2f} | {rows[0][1] / seconds:.2f}x | {alloc:.1f} | {reserved:.1f} |", flush=True)

    restore_diffsynth()
    from diffsynth.models import wan_video_dit

    # DiffSynth picks sageattention whenever it imports, and sageattention has no backward: its training would
    # then get no gradient through self-attention (15.05 s instead of 23.4 s per step on an H200, and wrong).
    # The baseline is DiffSynth's next choice without flash-attn, torch SDPA, which trains correctly.
    wan_video_dit.SAGE_ATTN_AVAILABLE = False
    step = diffsynth_step(arch, args.frames, args.height, args.width)
    show(("DiffSynth (DiffusionTrainingModule + FlowMatchSFTLoss)", *timed(step, args.steps, args.warmup)))
    del step
    free()
    # (name, compile, attention, recompute self-attention, FP8 linears)
    variants = [("wanray micro_step", False, "sdpa", True, False), ("wanray micro_step", False, "auto", True, False),
                ("wanray micro_step, self-attention kept (selective checkpointing)", False, "auto", False, False)]
    if args.compile:
        variants += [("wanray micro_step + torch.compile blocks", True, "auto", True, False),
                     ("wanray micro_step + torch.compile + self-attention kept", True, "auto", False, False)]
    if args.fp8:
        variants += [("wanray micro_step + FP8 linears (strategy.fp8)", False, "auto", True, True),
                     ("wanray micro_step + torch.compile + FP8 linears", True, "auto", True, True)]
    if args.fp8_attention:  # FP8 forward (cuDNN), exact bf16 backward: wanray.fp8_attention
        variants += [("wanray micro_step + torch.compile + FP8 attention", True, "cudnn-fp8", True, False),
                     ("wanray micro_step + torch.compile + FP8 linears + FP8 attention", True, "cudnn-fp8", True, True)]
    if args.only_ours:
        variants = [v for v in variants if v[2] != "sdpa" and v[3]]  # each switch alone against plain ours
    if args.rows:
        keep = set(args.rows.split(";"))
        variants = [v for v in variants if v[0] in keep]
    for name, compile_blocks, attention, recompute, fp8 in variants:
        step, backend = wanray_step(arch, args.frames, args.height, args.width, compile_blocks, attention, recompute,
                                    fp8)
        show((f"{name} (attention {backend})", *timed(step, args.steps, args.warmup + compile_blocks)))
        del step
        free()
    from gpu_common import save

    print("saved", save("train_step", {
        "shape": {"frames": args.frames, "height": args.height, "width": args.width, "tokens": tokens},
        "rows": [{"step": n, "s_per_step": round(s, 2), "vs_diffsynth": round(rows[0][1] / s, 2),
                  "peak_allocated_GiB": round(a, 1), "peak_reserved_GiB": round(r, 1)} for n, s, a, r in rows]}))


def embedded(args) -> None:
    """Samples/s of the loop's step on the embedded model (fp32, random inputs) per batch size (``data.batch_size``):
    LoRA of the DiT, and the full DiT + VACE as its DiT stage trains it; with and without gradient checkpointing."""
    import time

    from wanray.components import build_dit, build_vace
    from wanray.specs import embedded as embedded_spec
    from wanray.training.config import LoraSettings, OptimSettings
    from wanray.training.engine import DDPEngine
    from wanray.training.flow import FlowMatching
    from wanray.training.model import DiTModule, add_lora
    from wanray.training.step import micro_step

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    spec = embedded_spec()
    shapes = ((128, 77),) if cuda else ((64, 5), (128, 17))
    name = torch.cuda.get_device_name() if cuda else f"CPU, {args.threads} thread(s)"
    print(f"# embedded model training step, {name}, fp32, random inputs; baseline: batch 1 of the same row")
    print("| method | size x frames | checkpointing | batch | samples/s | ms/step | vs batch 1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in ("lora", "full"):
        for size, frames in shapes:
            for checkpointing in ((True, False) if cuda else (False,)):
                base = None
                for batch in args.batches:
                    torch.manual_seed(0)
                    dit = build_dit(spec.dit)
                    vace = None
                    if method == "lora":
                        add_lora(dit, LoraSettings(rank=16), seed=0)
                    else:
                        vace = build_vace(spec.vace, spec.dit).requires_grad_(True)
                        dit.requires_grad_(True)
                    module = DiTModule(dit, vace, checkpointing=checkpointing, offload=False).to(device).train()
                    engine = DDPEngine(module, OptimSettings(lr=1e-4), 100, torch.float32, device, prepare=False)
                    one = random_inputs(spec.dit, frames, size, size, device=device, dtype=torch.float32,
                                        text_len=spec.text_encoder.text_len)
                    if vace is not None:
                        one["vace_context"] = torch.randn(1, spec.vace.in_dim, *one["y"].shape[2:], device=device)
                    inputs = {k: v.expand(batch, *v.shape[1:]).contiguous() for k, v in one.items()}
                    flow = FlowMatching()
                    run = lambda s: micro_step(engine, flow, inputs, seed=0, step=s, rank=0, micro=0,  # noqa: E731
                                               grad_accum=1, dtype=torch.float32, boundary=True, loss_divisor=1)
                    for s in range(3):
                        run(s)
                    sync()
                    started = time.perf_counter()
                    for s in range(args.steps):
                        run(s + 3)
                    sync()
                    per = (time.perf_counter() - started) / args.steps
                    rate = batch / per
                    base = base or rate
                    print(f"| {method} | {size}x{size}x{frames} | {checkpointing} | {batch} | {rate:.1f} | "
                          f"{per * 1000:.0f} | {rate / base:.2f}x |", flush=True)
                    del engine, module, dit, vace, inputs
                    if cuda:
                        free()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=49)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd blocks")
    p.add_argument("--fp8", action="store_true",
                   help="also time FP8 linears (torchao float8 training, strategy.fp8), eager and compiled; "
                        "needs a GPU of compute capability >= 8.9")
    p.add_argument("--fp8-attention", action="store_true",
                   help="also time cuDNN FP8 attention (forward FP8, backward bf16), compiled, with and without FP8 linears")
    p.add_argument("--rows", default="", help="';'-separated exact names of our rows to keep (DiffSynth's always runs)")
    p.add_argument("--only-ours", action="store_true", help="keep the baseline, ours (auto attention) and the --compile/--fp8 rows; skip the SDPA and "
                        "selective-checkpointing rows")
    p.add_argument("--embedded", "--cpu-embedded", action="store_true",
                   help="embedded model samples/s per batch size instead (--device, --batches)")
    p.add_argument("--device", default="cpu", help="--embedded: cpu or cuda")
    p.add_argument("--batches", type=lambda text: [int(b) for b in text.split(",")], default=[1, 2, 4],
                   help="--embedded: comma-separated batch sizes, the first is the baseline (default 1,2,4)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.embedded:
        args.steps = max(args.steps, 10)
        embedded(args)
    else:
        gpu(args)


if __name__ == "__main__":
    main()
