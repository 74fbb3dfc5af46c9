"""strategy.fp8: torchao float8 training of the DiT/VACE blocks' linears, emulated on CPU (torchao's
``emulate=True``: float8 rounding of inputs, weights and gradients as on a GPU, matmuls in float32)."""

import pytest
import torch

from wanray import accel
from wanray.attention import BackendUnavailable
from wanray.training.config import apply_overrides
from wanray.training.presets import embedded_lora_smoke

FP8 = ["scaling.use_gpu=true", "strategy.fp8=true"]

# The FP8 LoRA step is compared with the float32 one (``fp8_vs_fp32`` in conftest.py) on fixed samples, so the
# test cannot pass or fail by the draw. The seeds are 0 and 1 (timesteps 907 and 339) and 128, which has the lowest
# timestep (20) of seeds 0-199. The error depends mostly on the timestep: low timesteps give the largest.
# Measured over seeds 0-199 (bench/results/fp8_grad_error_cpu.md); one draw at timestep 1000 is left out, because
# its loss weight is 0. On the shipped weights (run 21: bench/results/embedded_run21-22_h100.md):
#   gradient relative error   min 0.089  median 0.111  p95 0.155  max 0.179   (these seeds: 0.107, 0.115, 0.173)
#   loss relative difference  min 0.000  median 0.014  p95 0.040  max 0.064   (0.012, 0.019, 0.006)
#   gradient cosine           min 0.984  median 0.994                          (0.994, 0.993, 0.986)
# On runs 19 + 20's they were: gradient max 0.173, loss max 0.087, cosine min 0.985; runs 16 + 18's: 0.191, 0.054,
# 0.982; run 15's: 0.181, 0.053, 0.984; run 14's: 0.182, 0.048; run 12's: 0.180, 0.048; run 11's: 0.184, 0.055,
# 0.983; run 10's: 0.175, 0.057, 0.985; run 6's (751c476): 0.182, 0.044, 0.984.
# The loss difference grew 2.5x on runs 19 + 20's weights (and fell back on run 21's), not through the code (runs
# 16 + 18's weights still give seed 0 0.010) nor the casts (each linear's own error is unchanged): the text
# cross-attention of the last DiT and VACE blocks then amplified the query's unchanged ~7% float8 error 3-4x instead
# of ~2x (the md file's session 21).
# Each e4m3 cast is off by ~2.7%, and no tensor has outliers. The trained DiT amplifies that rounding, most of
# all at low noise: the prediction is ~4% off at timestep 900 and ~21% off at timestep 20. The first bound,
# 0.15, was set on the untrained weights, which gave 0.046-0.062.
# Each bound is >= 1.3x the worst of the 199 draws on each of these weights (gradient: 0.25 = 1.31x runs 16 + 18's
# 0.191; loss: 0.12 = 1.38x runs 19 + 20's 0.087), so new weights of the same kind still pass. Saturating casts
# (scale 64x too large) give error ~1.0 and cosine ~0. Inputs and weights in e5m2 instead of e4m3 give 0.27 on
# seed 128. The floor is 7x under the smallest error measured and far above float32's own noise (~1e-6), which
# shows that FP8 ran.
# After new weights, re-measure with: nice -n 10 .venv/bin/python bench/fp8_grad_error.py --draws 200
SEEDS = (0, 1, 128)
GRAD_BOUND = 0.25
LOSS_BOUND = 0.12
COSINE_MIN = 0.97
GRAD_FLOOR = 0.01


def test_fp8_without_gpus_is_refused_in_the_config():
    with pytest.raises(ValueError, match="strategy.fp8 runs float8 matmuls on GPUs.*set scaling.use_gpu=true"):
        apply_overrides(embedded_lora_smoke(), ["strategy.fp8=true"])


def test_fp8_on_a_cpu_worker_is_refused_with_what_it_needs():
    from wanray.training.model import build_training_model

    with pytest.raises(BackendUnavailable, match="strategy.fp8 needs a CUDA GPU of compute capability >= 8.9"):
        build_training_model(apply_overrides(embedded_lora_smoke(), FP8), torch.device("cpu"))


def test_fp8_lora_step_converts_the_frozen_linears_and_stays_close_to_fp32(monkeypatch, fp8_vs_fp32):
    from torchao.float8.float8_linear import Float8Linear

    from wanray.training.model import build_training_model

    reference = build_training_model(embedded_lora_smoke(), torch.device("cpu"))
    monkeypatch.setattr(accel, "_EMULATE_FP8", True)
    fp8 = build_training_model(apply_overrides(embedded_lora_smoke(), FP8), torch.device("cpu"))

    dit, vace = fp8.module.dit, fp8.module.vace
    q = dit.blocks[0].self_attn.q  # peft's wrapper: frozen base layer + adapters
    assert isinstance(q.base_layer, Float8Linear) and not q.base_layer.weight.requires_grad
    assert type(q.lora_A["default"]) is torch.nn.Linear and type(q.lora_B["default"]) is torch.nn.Linear
    assert type(dit.head.head) is torch.nn.Linear and type(dit.text_embedding[0]) is torch.nn.Linear
    converted = [m for m in fp8.module.modules() if isinstance(m, Float8Linear)]
    per_block = 12  # self_attn q,k,v,o; cross_attn q,k,v,o,k_img,v_img; ffn.0, ffn.2 (all dims multiples of 16)
    assert len(converted) == per_block * (len(dit.blocks) + len(vace.vace_blocks)) + 1 + len(vace.vace_blocks)
    assert fp8.trainable == reference.trainable  # the adapters train, nothing else

    for seed in SEEDS:
        r = fp8_vs_fp32(reference, fp8, seed)
        assert r["finite"], f"seed {seed}: FP8 loss or gradients not finite"
        assert r["loss"] <= LOSS_BOUND, f"seed {seed} (timestep {r['timestep']:.0f}): loss moved {r['loss']:.4f}"
        assert GRAD_FLOOR < r["grad"] < GRAD_BOUND, f"seed {seed} (timestep {r['timestep']:.0f}): {r['grad']:.4f}"
        assert r["cosine"] > COSINE_MIN, f"seed {seed} (timestep {r['timestep']:.0f}): cosine {r['cosine']:.5f}"


def test_missing_torchao_names_the_install_command(without_torchao):
    from wanray.components import build_dit
    from wanray.specs import embedded

    with pytest.raises(BackendUnavailable, match=r"strategy.fp8 needs torchao.*pip install 'wanray\[fp8\]'"):
        accel.apply_fp8_training((build_dit(embedded().dit), None))
