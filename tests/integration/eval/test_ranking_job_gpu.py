"""The ranking job on a GPU host: `pytest -m gpu tests/integration/eval` (its own local Ray, which sees the GPUs)."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.gpu
def test_two_models_on_one_gpu_take_turns(eval_dataset, random_lora, tmp_path):
    out = tmp_path / "eval"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a fresh local Ray that detects the GPU
    proc = subprocess.run(
        [sys.executable, "-m", "wanray.training.evaluate", "--models", f"base,styled=base+{random_lora}",
         "--dataset", str(eval_dataset["root"]), "--out", str(out), "--frames", "5", "--height", "64",
         "--width", "64", "--steps", "2", "--device", "cuda"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((out / "results.json").read_text())
    assert record["config"]["resolved_device"] == "cuda" and record["config"]["resolved_gpus_per_model"] == 1
    assert len(record["results"]) == 2 * len(eval_dataset["test"])
    assert all(r["info"]["device"].startswith("cuda") for r in record["results"])
    assert all(m["loaded"]["device"].startswith("cuda") for m in record["models"])
