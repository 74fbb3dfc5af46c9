"""Configs and presets: the seed's numbers, validation with the fix in the message, --set overrides."""

from pathlib import Path

import pytest

from wanray.training.config import TrainConfig, apply_overrides
from wanray.training.presets import PRESETS, get_preset


def test_every_preset_builds_and_round_trips_through_json_dict():
    for name, build in PRESETS.items():
        config = build()
        assert config.name == name
        assert TrainConfig.from_dict(config.to_dict()) == config
        assert config.data.frames % 4 == 1


def test_seed_presets_match_the_seed_table():
    lora = get_preset("wan21_i2v_720p_lora")
    assert (lora.lora.rank, lora.optim.lr, lora.epochs, lora.data.repeat) == (32, 1e-4, 2, 10)
    assert lora.lora.target_modules == ("q", "k", "v", "o", "ffn.0", "ffn.2")
    assert (lora.data.height, lora.data.width, lora.data.frames) == (720, 1280, 57)  # the seed's 60, made 4n+1
    assert lora.data.extra_inputs == ("input_image",)
    assert get_preset("wan21_i2v_720p_full").lora is None and get_preset("wan21_i2v_720p_full").data.frames == 41
    for expert in ("high_noise", "low_noise"):
        assert get_preset(f"wan22_i2v_a14b_lora_{expert}").data.frames == 45
        full = get_preset(f"wan22_i2v_a14b_full_{expert}")
        assert (full.data.frames, full.expert, full.expert_boundary, full.lora) == (25, expert, 0.9, None)


def test_overrides_change_typed_fields_and_revalidate():
    config = apply_overrides(get_preset("embedded_lora"), [
        "optim.lr=2e-4", "data.frames=9", "lora.target_modules=q,v", "strategy.gradient_checkpointing=false",
        "scaling.num_workers=2", "max_steps=7",
    ])
    assert config.optim.lr == 2e-4 and config.data.frames == 9 and config.lora.target_modules == ("q", "v")
    assert config.strategy.gradient_checkpointing is False and config.scaling.num_workers == 2
    assert config.max_steps == 7
    full = apply_overrides(get_preset("embedded_lora"), ["lora=none"])
    assert full.lora is None and full.method == "full"


@pytest.mark.parametrize("assignment, message", [
    ("data.frames=60", "use 57 or 61"),
    ("data.height=100", "multiples of 16"),
    ("lora.target_modules=q,norm1", "choose from"),
    ("strategy.offload_params=true", "needs strategy.engine=deepspeed"),
    ("optim.lr=fast", "must be a number"),
    ("optim.warmup=3", "unknown setting"),
    ("scaling.num_workers=1.5", "whole number"),
    ("expert=middle", "must be one of"),
    ("strategy.attention=sage", "no backward pass"),  # sageattention is forward-only: no gradient would flow
    ("data.batch_size=0", "at least 1"),
    ("data.in_memory=true", "set data.latent_cache too"),
    ("strategy.precision=fp16", "one of \[.auto., .bf16., .fp32., .tf32.\]"),
    # not a number, or not a finite one: they would train NaN weights or never stop
    ("optim.grad_clip=NaN", "grad_clip must be a positive number"),
    ("optim.lr=Infinity", "lr must be a positive number"),
    ("max_time_s=NaN", "max_time_s must be positive"),
    ("lora.alpha=NaN", "alpha must be a positive number"),
    ("optim.betas=1.5,0.999", "betas must be two numbers in \[0, 1\)"),
    ("optim.eps=-1", "eps must be positive"),
    ("optim.weight_decay=-1", "weight_decay >= 0"),
])
def test_bad_values_fail_with_the_fix(assignment, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(get_preset("embedded_lora"), [assignment])


def test_lora_fields_on_a_full_preset_are_refused():
    with pytest.raises(ValueError, match="full fine-tune"):
        apply_overrides(get_preset("wan21_i2v_720p_full"), ["lora.rank=8"])


def test_deepspeed_offload_combinations():
    base = get_preset("embedded_lora")
    ok = apply_overrides(base, ["strategy.engine=deepspeed", "strategy.zero_stage=3", "strategy.offload_optimizer=true",
                                "strategy.offload_params=true"])
    assert ok.strategy.zero == 3
    with pytest.raises(ValueError, match="needs zero_stage 3"):
        apply_overrides(base, ["strategy.engine=deepspeed", "strategy.zero_stage=2", "strategy.offload_params=true"])
    assert apply_overrides(base, ["strategy.zero_stage=3"]).strategy.zero == 0  # DDP ignores the ZeRO stage


def test_the_plan_counts_steps_in_batches_of_rows():
    from wanray.training.state import make_plan

    common = dict(repeat=2, epochs=3, max_steps=None, source="cache", source_reason="")
    plan = make_plan(rows=101, num_workers=2, grad_accum=3, batch_size=4, **common)
    assert (plan.rows_per_worker, plan.steps_per_pass, plan.total_steps) == (50, 4, 24)  # 50 // (3 x 4), x 2 x 3
    assert plan.rows_unused_per_pass == 101 - 2 * 4 * 3 * 4  # the split's remainder, and 2 rows per worker
    assert make_plan(rows=101, num_workers=2, grad_accum=3, **common).steps_per_pass == 16  # batch_size 1
    with pytest.raises(ValueError, match="2 workers x 3 accumulation steps x 16 per batch"):
        make_plan(rows=95, num_workers=2, grad_accum=3, batch_size=16, **common)


def test_micro_batches_resume_where_the_checkpoint_left_off():
    from wanray.training.loop import _micro_batches

    rows = [{"id": i} for i in range(11)]
    whole = list(_micro_batches(rows, 3, start=0, stop=9))
    assert [(done, [r["id"] for r in batch]) for done, batch in whole] == [(3, [0, 1, 2]), (6, [3, 4, 5]),
                                                                           (9, [6, 7, 8])]
    assert list(_micro_batches(rows, 3, start=6, stop=9)) == whole[2:]  # rows 0-5 were trained on before


def test_tf32_trains_in_float32():
    import torch

    from wanray.training.model import compute_dtype

    config = apply_overrides(get_preset("embedded_lora"), ["strategy.precision=tf32"])
    assert compute_dtype(config.strategy.precision, torch.device("cuda")) == torch.float32
    assert compute_dtype("auto", torch.device("cuda")) == torch.bfloat16


class _Shard:
    """A worker's dataset shard as the loop sees it (``iter_rows``), over latent-cache rows."""

    def __init__(self, rows):
        self.rows = rows

    def iter_rows(self):
        yield from self.rows


def test_resident_rows_index_the_cached_tensors_and_replay_each_pass():
    import torch
    from safetensors.torch import save

    from wanray.training.data import ResidentRows

    tensors = [{"input_latents": torch.randn(1, 16, 2, 4, 4), "context": torch.randn(1, 8, 128)} for _ in range(7)]
    rows = _Shard([{"tensors": save(t)} for t in tensors])
    resident = ResidentRows(rows, torch.device("cpu"), torch.float64, seed=3)
    assert resident.count == 7
    assert resident.nbytes == sum(v.numel() for t in tensors for v in t.values()) * 8
    order = resident.pass_order(2)
    assert sorted(order) == list(range(7))
    assert resident.pass_order(2) == order  # a resumed run replays the pass
    assert any(resident.pass_order(p) != order for p in (0, 1, 3))
    assert ResidentRows(rows, torch.device("cpu"), torch.float64, seed=4).pass_order(2) != order
    batch = resident(order[:3])  # [3, ...] each, in the pass's order, in the model's dtype
    for key in tensors[0]:
        expected = torch.cat([tensors[i][key] for i in order[:3]]).double()
        assert batch[key].dtype == torch.float64 and torch.equal(batch[key], expected)
    with pytest.raises(RuntimeError, match="empty"):
        ResidentRows(_Shard([]), torch.device("cpu"), torch.float32, seed=0)


def test_the_driver_hands_workers_absolute_paths(tmp_path, monkeypatch):
    from dataclasses import replace

    from wanray.training.trainer import absolute_paths

    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)  # Ray Train workers run elsewhere (a session folder): relative paths would move
    smoke = get_preset("embedded_lora_smoke")
    config = absolute_paths(replace(smoke, output_dir="runs", model="my-model",
                                    data=replace(smoke.data, latent_cache="~/latents")))
    assert config.output_dir == str(tmp_path / "runs") and config.model == str(tmp_path / "my-model")
    assert config.data.latent_cache == str(Path("~/latents").expanduser())
    assert absolute_paths(smoke).model == smoke.model == "embedded"  # a spec name stays a name
