"""The frame-budget planner: calibrated on an H100, and what it says about the seed's table."""

from dataclasses import replace

import pytest

from wanray.specs import wan21_i2v_14b_720p, wan22_i2v_a14b
from wanray.training.planner import Setup, estimate, fits, max_frames, usable_gib
from wanray.training.presets import get_preset

# bench/results/train_memory_h100.md: torch.cuda.max_memory_allocated of the loop's LoRA step (r32,
# random 14B weights, 1280x720, gradient checkpointing) on an H100 80GB, torch 2.11.
MEASURED_H100_GIB = {(33, False): 53.8, (49, False): 63.1, (57, False): 67.8, (81, True): 54.0}


@pytest.mark.parametrize("frames, offload", sorted(MEASURED_H100_GIB))
def test_predictions_are_within_10_percent_of_h100_measurements(frames, offload):
    setup = Setup(spec=wan21_i2v_14b_720p(), method="lora", engine="ddp", frames=frames, checkpoint_offload=offload)
    predicted = estimate(setup).allocated
    measured = MEASURED_H100_GIB[(frames, offload)]
    assert abs(predicted - measured) / measured < 0.10, (predicted, measured)


@pytest.mark.parametrize("preset", ["wan21_i2v_720p_lora", "wan21_i2v_720p_full", "wan22_i2v_a14b_lora_high_noise",
                                    "wan22_i2v_a14b_full_low_noise"])
def test_the_seed_presets_fit_an_80gb_card_with_a_latent_cache(preset):
    config = get_preset(preset)
    setup = replace(Setup.from_config(config), encoders_on_gpu=False)
    assert fits(setup, 80), estimate(setup).table()
    assert max_frames(setup, 80) >= config.data.frames


def test_seed_wan21_lora_60_frames_is_bracketed_by_the_encoder_placement():
    """The seed's "60" (57 as 4n+1) sits between DiffSynth-style single-stage training (encoders on the
    GPU: 49 fit) and training from the latent cache (69 fit) on an 80 GB card."""
    lora = Setup.from_config(get_preset("wan21_i2v_720p_lora"))
    with_encoders = max_frames(replace(lora, encoders_on_gpu=True), 80)
    cached = max_frames(replace(lora, encoders_on_gpu=False), 80)
    assert with_encoders < 57 < cached


def test_memory_levers_move_the_budget_the_right_way():
    base = Setup(spec=wan21_i2v_14b_720p(), method="lora", engine="deepspeed", zero_stage=2, workers=8)
    assert max_frames(replace(base, checkpoint_offload=True), 80) > max_frames(base, 80)
    assert max_frames(base, 141) > max_frames(base, 80)
    assert max_frames(replace(base, checkpointing=False), 80) is None or max_frames(replace(base, checkpointing=False), 80) < 9
    full = Setup(spec=wan21_i2v_14b_720p(), method="full", engine="deepspeed", workers=8)
    zero2 = estimate(replace(full, zero_stage=2)).total
    zero3 = estimate(replace(full, zero_stage=3)).total
    offloaded = estimate(replace(full, zero_stage=3, offload_optimizer=True, offload_params=True)).total
    assert zero2 > zero3 > offloaded
    assert not fits(replace(full, workers=1, zero_stage=2), 80)  # 16 bytes x 16.4 B parameters
    wan22 = Setup(spec=wan22_i2v_a14b(), method="lora", engine="deepspeed", workers=8)
    assert estimate(replace(wan22, other_experts_on_gpu=1)).total - estimate(wan22).total > 25  # a 14B expert, bf16
    assert usable_gib(80) == pytest.approx(79.65, abs=0.01)


def test_a_larger_micro_batch_takes_its_activations_as_many_times():
    from wanray.training.config import apply_overrides

    one = Setup.from_config(apply_overrides(get_preset("wan21_i2v_720p_lora"), ["data.latent_cache=/x"]))
    four = Setup.from_config(apply_overrides(get_preset("wan21_i2v_720p_lora"), ["data.latent_cache=/x",
                                                                                 "data.batch_size=4"]))
    assert (one.batch, four.batch) == (1, 4)
    per_sample = {k: v for k, v in estimate(one).parts.items() if estimate(four).parts[k] != v}
    assert per_sample and all(estimate(four).parts[k] == pytest.approx(4 * v) for k, v in per_sample.items())
    assert fits(one, 80) and not fits(four, 80)  # 70 GiB at batch 1: the batch of 4 does not fit an 80 GB card
    assert max_frames(four, 80) < max_frames(one, 80)
