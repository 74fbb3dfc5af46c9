"""TeaCache: wanray's coefficient sets in DiffSynth's TeaCache, skipping on the trained embedded model, calibration."""

import dataclasses

import numpy as np
import pytest

from wanray import tea_cache
from wanray.attention import BackendUnavailable
from wanray.config import GenerationConfig

SMALL = dict(height=64, width=64, frames=5, steps=6)  # 6 steps: 0.03 skips some middle steps, 0.5 all


def _run(generator, photo, threshold):
    """Generate once; returns (DiT passes, passes whose blocks ran, info)."""
    counts = {"total": 0, "computed": 0}
    hooks = [generator.pipe.dit.head.register_forward_hook(lambda *_: counts.__setitem__("total", counts["total"] + 1)),
             generator.pipe.dit.blocks[0].register_forward_hook(
                 lambda *_: counts.__setitem__("computed", counts["computed"] + 1))]
    try:
        result = generator.generate(GenerationConfig(image=photo, prompt="a girl dances the wave", seed=1,
                                                     tea_cache=threshold, **SMALL))
    finally:
        for hook in hooks:
            hook.remove()
    return counts["total"], counts["computed"], result.info


def test_embedded_model_skips_dit_passes_at_a_large_threshold_and_none_at_a_tiny_one(embedded_generator, photo):
    total, computed, info = _run(embedded_generator, photo, 0.5)
    assert info["tea_cache"] == {"threshold": 0.5, "model_id": tea_cache.EMBEDDED_ID}
    assert total == SMALL["steps"]  # the embedded model's default cfg 1: one pass per step
    assert computed == 2  # only the first and last steps, which always compute
    # the shipped fit rescales these 6 steps' changes to 0.011-0.07: 0.03 skips some middle steps, not all
    total, computed, _ = _run(embedded_generator, photo, 0.03)
    assert 2 < computed < total
    total, computed, _ = _run(embedded_generator, photo, 1e-6)
    assert computed == total == SMALL["steps"]


def test_diffsynth_tea_cache_takes_our_ids_and_keeps_its_own():
    from diffsynth.pipelines.wan_video import TeaCache

    tea_cache.install()
    tea_cache.install()  # idempotent: one wrapper
    ours = TeaCache(12, 0.1, tea_cache.EMBEDDED_ID)
    assert ours.coefficients == list(tea_cache.COEFFICIENTS[tea_cache.EMBEDDED_ID].coefficients)
    theirs = TeaCache(50, 0.1, "Wan2.1-I2V-14B-720P")
    assert theirs.coefficients[0] == pytest.approx(8.10705460e03)
    assert "Wan2.1-I2V-14B-720P" in tea_cache.diffsynth_ids() and tea_cache.EMBEDDED_ID in tea_cache.known_ids()
    with pytest.raises(ValueError, match="not a supported TeaCache model id"):
        TeaCache(12, 0.1, "no-such-model")


def test_unknown_coefficient_set_is_refused(embedded_generator, photo, monkeypatch):
    spec = dataclasses.replace(embedded_generator.spec, tea_cache_model_id="no-such-set")
    monkeypatch.setattr(embedded_generator, "spec", spec)
    with pytest.raises(BackendUnavailable, match="'no-such-set'.*neither DiffSynth .*Wan2.1-I2V-14B-720P.* nor "
                                                 "wanray .*wanray-embedded"):
        _run(embedded_generator, photo, 0.2)


def test_shipped_coefficients_were_fitted_on_the_bundled_weights():
    from wanray.generation import EMBEDDED_MODEL_DIR, resolve_model

    fitted = tea_cache.COEFFICIENTS[tea_cache.EMBEDDED_ID]
    assert tea_cache.weights_sha256(EMBEDDED_MODEL_DIR) == fitted.weights_sha256, (
        f"the bundled DiT changed since its TeaCache coefficients were fitted; refit them: {fitted.command}")
    assert resolve_model("embedded")[1].tea_cache_model_id == tea_cache.EMBEDDED_ID


def test_recording_sees_every_pass_and_restores_the_pipeline(embedded_generator, photo):
    pipe = embedded_generator.pipe
    model_fn = pipe.model_fn
    with tea_cache.recording(pipe) as traces:
        embedded_generator.generate(GenerationConfig(image=photo, prompt="a boy dances", cfg=3.0,
                                                     **{**SMALL, "steps": 4}))
    assert len(traces) == 2  # positive and negative guidance passes (the embedded model's default is cfg 1: one)
    for trace in traces:
        assert len(trace.input) == len(trace.residual) == len(trace.output) == 3  # steps 2..4 vs the step before
        assert all(v > 0 for v in trace.input + trace.output)
    assert traces[0].input == traces[1].input  # t_mod depends on the timestep alone
    shift = embedded_generator.spec.default_sigma_shift
    assert np.allclose(tea_cache.input_changes(pipe, 4, shift), traces[0].input, rtol=1e-5)
    unit = next(u for u in pipe.units if type(u).__name__ == "WanVideoUnit_TeaCache")
    assert pipe.model_fn is model_fn and "process" not in vars(unit)


def test_fit_recovers_a_known_polynomial():
    rng = np.random.default_rng()
    true = rng.normal(size=5) * np.array([100.0, 30.0, 10.0, 1.0, 0.1])
    x = rng.uniform(0.01, 0.4, size=200)
    assert np.allclose(tea_cache.fit(x, np.poly1d(true)(x)), true, rtol=1e-5, atol=1e-6)
    noisy = np.poly1d(true)(x) + rng.normal(scale=1e-4, size=x.size)
    fitted = tea_cache.fit(x, noisy)
    assert np.abs(np.poly1d(fitted)(x) - np.poly1d(true)(x)).max() < 1e-3
    assert tea_cache.r_squared(fitted, x, noisy) > 0.99


@pytest.mark.parametrize("x, y, message", [
    ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], "at least 5 distinct input changes"),
    ([0.1] * 10, [0.2] * 10, "at least 5 distinct"),
    ([0.1, 0.2, float("nan"), 0.4, 0.5, 0.6], [0.1] * 6, "NaN or infinite"),
    ([0.1, 0.2], [0.1], "equally long"),
])
def test_fit_refuses_what_it_cannot_fit(x, y, message):
    with pytest.raises(ValueError, match=message):
        tea_cache.fit(x, y)


def test_fit_command_refits_saved_points_and_reports_the_lowest_value(tmp_path, capsys):
    import json

    true = [0.8, 0.3, 0.002]  # positive over any input change
    rng = np.random.default_rng()
    runs = [{"input": list(x), "output": list(np.poly1d(true)(x)), "residual": list(x)}
            for x in rng.uniform(0.02, 0.3, size=(4, 11))]
    points = tmp_path / "points.json"
    points.write_text(json.dumps({"model": "embedded", "weights_sha256": "other", "runs": runs}))
    out = tmp_path / "fit.json"
    assert tea_cache.main(["fit", str(points), "--degree", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recorded on other weights" in printed and "44 points" in printed and "NOT POSITIVE" not in printed
    result = json.loads(out.read_text())
    assert np.allclose(result["coefficients"], true, rtol=1e-6)
    assert result["lowest_value"]["value"] > 0.002 and result["degree"] == 2 and len(result["runs"]) == 4


@pytest.mark.parametrize("argv, message", [
    (["calibrate", "--steps", "12,x"], "integers separated by commas"),
    (["calibrate", "--steps", "12,2"], "at least 3"),
    (["calibrate", "--cases", "0"], "at least 1"),
    (["calibrate", "--frames", "75"], "73 or 77"),
    (["calibrate", "--model", "/no/such/model"], "neither a known spec"),
    (["calibrate", "--json", "/no/such/folder/points.json"], "does not exist"),
    (["calibrate", "--target", "noise"], "invalid choice"),
    ([], "required: command"),
    (["fit", "{tmp}/missing.json"], "cannot read it"),
    (["fit", "{tmp}/bad.json"], "not a calibration's points"),
    (["fit", "{tmp}/few.json"], "distinct input changes"),
])
def test_calibration_cli_refuses_bad_input_before_loading_a_model(argv, message, capsys, tmp_path):
    (tmp_path / "bad.json").write_text('{"runs": [1, 2]}')
    (tmp_path / "few.json").write_text('{"model": "embedded", "runs": [{"input": [0.1, 0.2], "output": [0.1, 0.2], '
                                       '"residual": [0.1, 0.2]}]}')
    with pytest.raises(SystemExit) as exit_:
        tea_cache.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
