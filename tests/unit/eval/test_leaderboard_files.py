"""Leaderboard files and side-by-side frames from synthetic scores (no models, no Ray)."""

import csv
import random

import numpy as np
import pytest
from PIL import Image

from wanray.cli import main
from wanray.scoring import parse_ratings, score_table
from wanray.training.leaderboard import side_by_side_frames, write_leaderboard
from wanray.video import fit


def _video(rng, t, h, w):
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_side_by_side_has_input_reference_and_each_model_labelled():
    rng = np.random.default_rng()
    photo = Image.fromarray(_video(rng, 1, 50, 40)[0])
    reference = _video(rng, 5, 64, 48)
    generated = {"base": _video(rng, 5, 64, 48), "a-model-with-a-long-name": _video(rng, 5, 128, 96)}
    frames = side_by_side_frames(photo, reference, generated, height=64, width=48)
    strip = frames.shape[1] - 64
    assert frames.shape == (5, strip + 64, 4 * 48, 3) and strip % 2 == 0 and strip >= 12
    body = frames[:, strip:]
    np.testing.assert_array_equal(body[:, :, :48], np.broadcast_to(np.asarray(fit(photo, 48, 64)), (5, 64, 48, 3)))
    np.testing.assert_array_equal(body[:, :, 48:96], reference)
    np.testing.assert_array_equal(body[:, :, 96:144], generated["base"])
    assert body[:, :, 144:].shape == (5, 64, 48, 3)  # the larger video, fitted to the panel
    header = frames[0, :strip]
    for i in range(4):  # every panel has its label drawn (white text on black)
        assert header[:, i * 48 : (i + 1) * 48].max() > 128
    np.testing.assert_array_equal(frames[:, :strip], np.broadcast_to(header, frames[:, :strip].shape))


def test_side_by_side_refuses_videos_of_other_lengths():
    rng = np.random.default_rng()
    with pytest.raises(ValueError, match="model 'b' has 4 frames but the reference has 5"):
        side_by_side_frames(Image.new("RGB", (8, 8)), _video(rng, 5, 16, 16), {"b": _video(rng, 4, 16, 16)},
                            height=16, width=16)


def _metrics_dict(psnr, ssim):
    return {"psnr_mean": psnr, "psnr_min": psnr - 1, "ssim_mean": ssim, "ssim_min": ssim - 0.1,
            "ssim_rgb_mean": ssim, "flicker": 1.5, "flicker_reference": 0.5}


def test_leaderboard_files_hold_the_table(tmp_path):
    rng = random.Random()
    models, entries = ["base", "lora", "full"], ["e1", "e2"]
    metrics = {(m, e): _metrics_dict(rng.uniform(15, 40), rng.uniform(0.3, 0.95)) for m in models for e in entries}
    text = "rater,model,entry,dynamic,camera,quality,accuracy\n"
    text += "".join(f"ana,lora,{e},{rng.randint(1, 5)},3,4,5\n" for e in entries)
    text += "ana,full,e1,2,2,2,2\n"
    table = score_table({k: (v["psnr_mean"], v["ssim_mean"]) for k, v in metrics.items()}, parse_ratings(text))
    files = write_leaderboard(table, tmp_path, specs={"base": "base", "lora": "base+l.safetensors", "full": "dir"},
                              entry_metrics=metrics, side_by_side={"e1": "side_by_side/e1.mp4"}, notes=["seed 0"])

    rows = list(csv.DictReader(files["csv"].open()))
    assert [r["model"] for r in rows] == [m.model for m in table.models]
    assert rows[0]["model"] == "lora" and rows[0]["complete"] == "True" and rows[0]["rank"] == "1"
    for row, m in zip(rows, table.models):
        assert float(row["total"]) == pytest.approx(m.total, rel=1e-5)
        assert row["basis"] == m.basis
    full = next(r for r in rows if r["model"] == "full")
    assert full["complete"] == "False" and full["subjective_part"] == "" and full["subjective"] == "8"

    entry_rows = list(csv.DictReader(files["entries_csv"].open()))
    assert len(entry_rows) == 6
    row = next(r for r in entry_rows if (r["model"], r["entry"]) == ("base", "e2"))
    assert float(row["psnr_mean"]) == pytest.approx(metrics[("base", "e2")]["psnr_mean"], rel=1e-5)
    assert row["raters"] == "0" and row["basis"] == "partial: metrics only, not rated"

    md = files["markdown"].read_text()
    assert "| 1 | lora |" in md and "(partial)" in md
    assert "## Missing ratings (3)" in md and "- full: e2" in md and "- base: e1, e2" in md
    assert "[e1](side_by_side/e1.mp4)" in md and "- seed 0" in md
    with Image.open(files["chart"]) as chart:
        chart.load()
        assert chart.format == "PNG" and chart.width > 200 and chart.height > 100


def test_cli_refuses_incomplete_requests_with_one_line(tmp_path, capsys):
    assert main(["eval", "--models", "base"]) == 1
    assert "give --models and --dataset" in capsys.readouterr().err
    assert main(["eval", "--rescore", str(tmp_path)]) == 1
    assert "holds no results.json" in capsys.readouterr().err
    assert main(["eval", "--models", "lora", "--dataset", str(tmp_path)]) == 1
    assert "model 'lora' needs a spec" in capsys.readouterr().err
