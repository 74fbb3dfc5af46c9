"""`wanray job submit|status|logs|list|stop` on the session's shared cluster: the embedded training preset
runs to completion from the shipped package, and a running job can be stopped."""

import random
import secrets
import time

import pytest
from wanray.raycluster.jobs import wait

from wanray.cli import main


@pytest.fixture
def client(ray_cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_cluster.dashboard_url)


def _job_id(kind):
    return f"wanray-test-{kind}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def synth_dataset(ray_cluster, job_package_cache, tmp_path_factory):
    """A tiny dataset written by a `synth` job submitted through the CLI: (job id, folder, entries)."""
    from ray.job_submission import JobSubmissionClient

    n, out = random.randint(2, 3), tmp_path_factory.mktemp("synth") / "data"
    job_id = _job_id("synth")
    assert main(["job", "submit", "synth", "--address", ray_cluster.dashboard_url, "--submission-id", job_id, "--",
                 "--n", str(n), "--out", str(out), "--frames", "9", "--height", "64", "--width", "64"]) == 0
    client = JobSubmissionClient(ray_cluster.dashboard_url)
    status = wait(client, job_id, timeout_s=300, poll_s=1)
    assert status == "SUCCEEDED", client.get_job_logs(job_id)[-4000:]
    return job_id, out, n


def test_synth_job_writes_its_dataset(synth_dataset, client):
    job_id, out, n = synth_dataset
    assert len(list((out / "photos").glob("*.png"))) == n
    assert len(list((out / "videos").glob("*.mp4"))) == n
    assert (out / "metadata.csv").is_file()
    assert str(client.get_job_status(job_id).value) == "SUCCEEDED"


def test_training_preset_job_runs_to_completion_and_reports(ray_cluster, client, synth_dataset, tmp_path, capsys,
                                                            printed_json):
    from wanray.training.config import apply_overrides
    from wanray.training.presets import get_preset
    from wanray.training.trainer import export_path

    address = ray_cluster.dashboard_url
    job_id, out_dir = _job_id("train"), tmp_path / "runs"
    overrides = [f"output_dir={out_dir}", f"data.dataset={synth_dataset[1]}"]
    args = ["--preset", "embedded_lora_smoke", *[x for o in overrides for x in ("--set", o)]]
    assert main(["job", "submit", "train", "--address", address, "--submission-id", job_id, "--", *args]) == 0
    printed = capsys.readouterr().out
    assert f"submitted {job_id}: python -m wanray.training.train --preset embedded_lora_smoke" in printed
    assert f"{address}/#/jobs/{job_id}" in printed

    status = wait(client, job_id, timeout_s=600, poll_s=2)
    assert status == "SUCCEEDED", client.get_job_logs(job_id)[-4000:]

    assert main(["job", "status", job_id, "--address", address, "--json"]) == 0
    info = printed_json(capsys.readouterr().out)
    assert info["status"] == "SUCCEEDED" and info["driver_exit_code"] == 0
    assert info["entrypoint"].startswith("python -m wanray.training.train")

    assert main(["job", "logs", job_id, "--address", address]) == 0
    logs = capsys.readouterr().out
    exported = export_path(apply_overrides(get_preset("embedded_lora_smoke"), overrides))
    assert f"trained embedded_lora_smoke: {exported}" in logs
    assert exported.is_file() and exported.stat().st_size > 0

    assert main(["job", "list", "--address", address]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(job_id))
    assert "SUCCEEDED" in row


def test_a_running_job_can_be_stopped(ray_cluster, client, synth_dataset, tmp_path, capsys):
    address = ray_cluster.dashboard_url
    job_id = _job_id("stop")
    assert main(["job", "submit", "train", "--address", address, "--submission-id", job_id, "--",
                 "--preset", "embedded_lora_smoke", "--set", f"output_dir={tmp_path / 'runs'}",
                 "--set", f"data.dataset={synth_dataset[1]}"]) == 0
    deadline = time.monotonic() + 180
    while (status := str(client.get_job_status(job_id).value)) == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == "RUNNING", client.get_job_logs(job_id)[-3000:]
    capsys.readouterr()

    assert main(["job", "stop", job_id, "--address", address, "--wait"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{job_id}: STOPPED"
    assert str(client.get_job_status(job_id).value) == "STOPPED"
    assert main(["job", "stop", job_id, "--address", address]) == 0
    assert "was not running" in capsys.readouterr().out


def test_status_of_an_unknown_job_is_a_clear_error(ray_cluster, capsys):
    job_id = _job_id("missing")
    assert main(["job", "status", job_id, "--address", ray_cluster.dashboard_url]) == 1
    err = capsys.readouterr().err
    assert f"Job {job_id} does not exist" in err and "Traceback" not in err
