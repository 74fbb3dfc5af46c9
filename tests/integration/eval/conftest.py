"""A tiny dataset in the datasets/ format (metadata.csv + mp4s + PNGs) and a random LoRA for the embedded model."""

import csv
import uuid

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from wanray.specs import embedded
from wanray.datasets.split import split_of
from wanray.video import write_mp4


def _ids(split, n):
    out = []
    while len(out) < n:
        candidate = f"clip_{uuid.uuid4().hex[:8]}"
        if split_of(candidate) == split:
            out.append(candidate)
    return out


@pytest.fixture(scope="module")
def eval_dataset(tmp_path_factory):
    """3 test and 2 train entries as datasets/ writes them (one pose video as control_video and vace_video);
    9-frame 64x64 references."""
    root = tmp_path_factory.mktemp("eval_dataset")
    rng = np.random.default_rng()
    test_ids, train_ids = sorted(_ids("test", 3)), _ids("train", 2)
    rows = []
    for entry_id in test_ids + train_ids:
        Image.fromarray((rng.random((80, 64, 3)) * 255).astype("uint8")).save(root / f"{entry_id}.png")
        write_mp4(list((rng.random((9, 64, 64, 3)) * 255).astype("uint8")), root / f"{entry_id}.mp4", 8)
        pose = f"poses/{entry_id}.mp4"
        write_mp4(list((rng.random((9, 64, 64, 3)) * 255).astype("uint8")), root / pose, 8)
        rows.append({"id": entry_id, "video": f"{entry_id}.mp4", "prompt": "the same person as an anime dancer",
                     "input_image": f"{entry_id}.png", "control_video": pose, "vace_video": pose})
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {"root": root, "test": test_ids, "train": train_ids}


def _lora_state(rank=4, scale=0.5, prefix="blocks"):
    arch = embedded().dit
    d, f = arch.dim, arch.ffn_dim
    shapes = {"self_attn.q": (d, d), "self_attn.k": (d, d), "self_attn.v": (d, d), "self_attn.o": (d, d),
              "ffn.0": (d, f), "ffn.2": (f, d)}
    state = {}
    for i in range(arch.num_layers):
        for name, (fan_in, fan_out) in shapes.items():
            state[f"{prefix}.{i}.{name}.lora_A.weight"] = torch.randn(rank, fan_in) * scale
            state[f"{prefix}.{i}.{name}.lora_B.weight"] = torch.randn(fan_out, rank) * scale
    return state


@pytest.fixture(scope="module")
def random_lora(tmp_path_factory):
    """A random LoRA on every attention and FFN layer of the embedded DiT."""
    path = tmp_path_factory.mktemp("lora") / "style.safetensors"
    save_file(_lora_state(), str(path))
    return path
