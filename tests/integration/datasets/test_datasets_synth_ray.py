import numpy as np
import pytest

from wanray.cli import main
from wanray.datasets.media import read_frames
from wanray.datasets.schema import read_manifest
from wanray.datasets.shape import VideoShape
from wanray.datasets.synth import SynthConfig, plan_entry, render_entry
from wanray.datasets.validate import ValidationConfig, validate


def test_synth_on_ray_writes_a_valid_set_identical_to_a_local_render(ray_set, synth_seed, tmp_path):
    rows = read_manifest(ray_set)
    config = SynthConfig(n=6, out=tmp_path / "local", seed=synth_seed, height=64, width=64, frames=9)
    assert [r.id for r in rows] == [plan_entry(config, i).id for i in range(6)]
    assert [r.record() for r in rows] == [
        {**plan_entry(config, i).record(), "vace_video_mask": "", "vace_reference_image": ""} for i in range(6)
    ]
    report = validate(ValidationConfig(root=ray_set, shape=VideoShape(height=64, width=64, frames=9, fps=15)))
    assert (report.total, report.accepted, report.quarantined) == (6, 6, 0)
    local = render_entry(config, plan_entry(config, 4))
    for column in ("video", "control_video"):
        a, fps_a = read_frames(ray_set / local[column])
        b, fps_b = read_frames(config.out / local[column])
        assert fps_a == fps_b == 15 and np.array_equal(np.stack(a), np.stack(b))


def test_resume_renders_only_what_is_missing_and_a_rerun_without_it_is_refused(
    ray_set_copy, synth_seed, synth_args, capsys
):
    rows = read_manifest(ray_set_copy)
    manifest = (ray_set_copy / "metadata.csv").read_text()
    lost = ray_set_copy / rows[2].video
    before = np.stack(read_frames(lost)[0])
    lost.unlink()
    kept = ray_set_copy / rows[0].video
    kept_mtime = kept.stat().st_mtime_ns
    args = ["datasets", "synth", "--out", str(ray_set_copy), "--seed", str(synth_seed), *synth_args]
    assert main(args) == 1
    assert "already holds a dataset" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert np.array_equal(np.stack(read_frames(lost)[0]), before)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert (ray_set_copy / "metadata.csv").read_text() == manifest
    # resuming with other settings would mix files of both: refused, naming what differs, before any work
    lost.unlink()
    assert main(args + ["--resume", "--dance", "spin"]) == 1
    assert "was rendered with other settings" in capsys.readouterr().err and not lost.exists()


@pytest.mark.parametrize(
    "flag, value, message", [("--height", "63", "even number"), ("--dance", "tango", "invalid choice")]
)
def test_synth_refuses_bad_settings_before_any_work(tmp_path, flag, value, message, capsys):
    try:
        code = main(["datasets", "synth", "--n", "2", "--out", str(tmp_path / "x"), flag, value])
    except SystemExit as e:  # argparse rejects an unknown choice itself
        code = e.code
    assert code != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
