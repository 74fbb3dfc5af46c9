"""Peak GPU memory of training steps of the 14B Wan DiT (random weights): measured vs the planner's prediction.

    python bench/train_memory.py --quick      # a few LoRA configs at 720p, ~5 min on one H100
    python bench/train_memory.py              # more frame counts, checkpoint offload, Wan2.2 DiT

Each config builds a random-weight DiT directly on the GPU (``wanray.components.build_dit``; no files),
runs the training loop's ``micro_step`` (peft LoRA r32 on q,k,v,o,ffn.0,ffn.2 in bf16, float32 master
weights in the optimizer, DiffSynth's gradient checkpointing through ``model_fn_wan_video``) for one warm-up and
one measured step, and compares ``torch.cuda.max_memory_allocated`` with
``wanray.training.planner.estimate(...).allocated``. Out-of-memory is reported with the prediction.
The planner's tolerance is 10%.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import torch

sys.path.insert(0, os.path.dirname(__file__))
from train_common import free, random_dit, random_inputs, timed  # noqa: E402

TARGETS = ("q", "k", "v", "o", "ffn.0", "ffn.2")


def measure(spec, frames, height, width, offload: bool):
    from wanray import accel
    from wanray.attention import install_attention
    from wanray.training.config import LoraSettings, OptimSettings
    from wanray.training.engine import DDPEngine
    from wanray.training.flow import FlowMatching
    from wanray.training.model import DiTModule, add_lora
    from wanray.training.step import micro_step

    install_attention("auto", "cuda")
    dit = random_dit(spec.dit)
    if hasattr(accel, "apply_fast_dit_kernels"):
        accel.apply_fast_dit_kernels(dit)
    add_lora(dit, LoraSettings(rank=32, target_modules=TARGETS), seed=0)
    module = DiTModule(dit, None, checkpointing=True, offload=offload).cuda()
    engine = DDPEngine(module, OptimSettings(lr=1e-4), 100, torch.bfloat16, torch.device("cuda"), prepare=False)
    inputs = random_inputs(spec.dit, frames, height, width)
    flow = FlowMatching()
    counter = iter(range(10**6))

    def step():
        micro_step(engine, flow, inputs, seed=0, step=next(counter), rank=0, micro=0, grad_accum=1,
                   dtype=torch.bfloat16, boundary=True, loss_divisor=1)

    try:
        return timed(step, steps=1, warmup=1)
    finally:
        del step, engine, module, dit, inputs
        free()


def main() -> None:
    from wanray.specs import wan21_i2v_14b_720p, wan22_i2v_a14b
    from wanray.training.planner import Setup, estimate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    wan21, wan22 = wan21_i2v_14b_720p(), wan22_i2v_a14b()
    configs = [(wan21, 33, False), (wan21, 49, False), (wan21, 57, False), (wan21, 81, True)]
    if not args.quick:
        configs += [(wan21, 17, False), (wan21, 61, False), (wan22, 45, False), (wan21, 121, True)]
    print(f"# LoRA r32 training step, random weights, 1280x720, {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}; planner 'allocated' vs torch.cuda.max_memory_allocated")
    print("| DiT | frames | tokens | checkpointing | predicted GiB | measured GiB | error | reserved GiB | s/step |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for spec, frames, offload in configs:
        setup = Setup(spec=spec, method="lora", engine="ddp", workers=1, frames=frames, height=720, width=1280,
                      checkpointing=True, checkpoint_offload=offload, encoders_on_gpu=False)
        predicted = estimate(setup).allocated
        mode = "with CPU offload" if offload else "on"
        try:
            seconds, alloc, reserved = measure(spec, frames, 720, 1280, offload)
            err = (predicted - alloc) / alloc * 100
            print(f"| {spec.name} | {frames} | {setup.tokens:,} | {mode} | {predicted:.1f} | {alloc:.1f} | {err:+.1f}% "
                  f"| {reserved:.1f} | {seconds:.1f} |", flush=True)
        except torch.OutOfMemoryError:
            free()
            print(f"| {spec.name} | {frames} | {setup.tokens:,} | {mode} | {predicted:.1f} | OOM | | | |", flush=True)


if __name__ == "__main__":
    main()
