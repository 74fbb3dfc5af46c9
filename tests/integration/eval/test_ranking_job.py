"""The ranking job on the local Ray cluster: embedded base vs base + a random LoRA on a tiny test split."""

import csv
import json
import sys
import time

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from wanray.training.evaluate import embedded_smoke_eval, rescore, run_evaluation

SMALL = dict(frames=5, steps=1)


def _csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_leaderboard_over_embedded_models(ray_cluster, eval_dataset, random_lora, tmp_path):
    import ray

    out = tmp_path / "eval"
    # each actor asks for 60% of the free CPUs, so the two models can only run in turn (one waits for the other's end)
    cpus = round(ray.available_resources()["CPU"] * 0.6, 2)
    config = embedded_smoke_eval(models=["base", f"styled=base+{random_lora}:0.7"], dataset=eval_dataset["root"],
                                 out=out, cpus_per_model=cpus, **SMALL)
    run = run_evaluation(config)
    test_ids = eval_dataset["test"]

    # per model x entry: exactly the test split, never a train entry
    entries = _csv(out / "entries.csv")
    assert sorted((r["model"], r["entry"]) for r in entries) == sorted(
        (m, e) for m in ("base", "styled") for e in test_ids
    )
    for r in entries:
        assert 0 < float(r["psnr_min"]) <= float(r["psnr_mean"]) < 100
        assert -1 <= float(r["ssim_min"]) <= float(r["ssim_mean"]) <= 1
        assert r["complete"] == "False" and r["raters"] == "0"
    base = {r["entry"]: float(r["psnr_mean"]) for r in entries if r["model"] == "base"}
    styled = {r["entry"]: float(r["psnr_mean"]) for r in entries if r["model"] == "styled"}
    assert base != styled  # the LoRA changed the videos, so their scores

    # per model: both partial (no ratings), totals = mean of entry PSNR and SSIM parts
    board = _csv(out / "leaderboard.csv")
    assert [r["rank"] for r in board] == ["1", "2"] and {r["model"] for r in board} == {"base", "styled"}
    for r in board:
        mine = [e for e in entries if e["model"] == r["model"]]
        assert float(r["total"]) == pytest.approx(np.mean([float(e["total"]) for e in mine]), rel=1e-4)
        assert r["complete"] == "False" and "no ratings" in r["basis"]
    assert float(board[0]["total"]) >= float(board[1]["total"])
    assert next(r for r in board if r["model"] == "styled")["spec"] == f"base+{random_lora}:0.7"

    md = (out / "leaderboard.md").read_text()
    assert "## Missing ratings (6)" in md and md.count("(partial)") >= 2
    for entry_id in test_ids:
        assert f"[{entry_id}](side_by_side/{entry_id}.mp4)" in md
    with Image.open(out / "leaderboard.png") as chart:
        chart.load()
        assert chart.format == "PNG" and chart.size[0] > 0

    # videos: each model's, and input | reference | base | styled side by side
    for entry_id in test_ids:
        for model in ("base", "styled"):
            assert iio.imread(out / "videos" / model / f"{entry_id}.mp4").shape == (5, 64, 64, 3)
        sbs = iio.imread(out / "side_by_side" / f"{entry_id}.mp4")
        assert sbs.shape[0] == 5 and sbs.shape[2] == (2 + 2) * 64 and sbs.shape[1] > 64

    record = json.loads((out / "results.json").read_text())
    assert all(r["unused"] == [] for r in record["results"])  # the pose video went to the VACE branch
    assert {r["info"]["steps"] for r in record["results"]} == {1}
    assert [r["info"]["loras"] for r in record["results"] if r["model"] == "styled"][0][0]["alpha"] == 0.7
    assert len(_csv(out / "ratings_template.csv")) == 6
    assert [m.model for m in run.table.models] == [r["model"] for r in board]

    # ratings arrive later: rate styled fully, base for one entry only
    ratings = tmp_path / "ratings.csv"
    rows = ["rater,model,entry,dynamic,camera,quality,accuracy"]
    rows += [f"ana,styled,{e},2,2,2,2" for e in test_ids] + [f"bo,styled,{test_ids[0]},4,4,4,4"]
    rows += [f"ana,base,{test_ids[0]},5,5,5,5"]
    ratings.write_text("\n".join(rows) + "\n")
    rerun = rescore(out, ratings)
    board = _csv(out / "leaderboard.csv")
    assert [r["model"] for r in board] == ["styled", "base"]  # complete first, whatever the numbers
    styled_entries = [e for e in _csv(out / "entries.csv") if e["model"] == "styled"]
    assert sorted(float(e["subjective"]) for e in styled_entries) == [8, 8, 12]  # ana 8 and bo 16 averaged
    assert float(board[0]["total"]) == pytest.approx(np.mean([float(e["total"]) for e in styled_entries]), rel=1e-4)
    assert board[1]["basis"] == "partial: metrics only; ratings for 1 of 3 entries (missing for 2)"
    assert set(rerun.table.missing) == {("base", e) for e in test_ids[1:]}


def test_a_model_that_cannot_load_is_named(ray_cluster, eval_dataset, tmp_path):
    from wanray.specs import embedded

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    embedded().save(no_weights)  # a spec file and nothing else: passes the driver's cheap checks, fails to load
    config = embedded_smoke_eval(models=[f"broken={no_weights}"], dataset=eval_dataset["root"],
                                 out=tmp_path / "eval", max_entries=1, **SMALL)
    with pytest.raises(RuntimeError, match=r"model 'broken' failed to load: .*ModelFileError: .*missing tokenizer"):
        run_evaluation(config)
    assert not (tmp_path / "eval" / "leaderboard.csv").exists()


def test_ray_job_submit_runs_the_entrypoint(ray_cluster, eval_dataset, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = tmp_path / "job"
    client = JobSubmissionClient(ray_cluster.dashboard_url)
    job = client.submit_job(
        entrypoint=f"{sys.executable} -m wanray.training.evaluate --models base --dataset {eval_dataset['root']} "
        f"--out {out} --max-entries 1 --frames 5 --height 64 --width 64 --steps 1"
    )
    deadline = time.monotonic() + 400
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, f"job still {status}"
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "1. base:" in logs and "wrote" in logs
    board = _csv(out / "leaderboard.csv")
    assert [r["model"] for r in board] == ["base"] and board[0]["entries"] == "1"
    assert iio.imread(out / "side_by_side" / f"{eval_dataset['test'][0]}.mp4").shape[2] == 3 * 64
