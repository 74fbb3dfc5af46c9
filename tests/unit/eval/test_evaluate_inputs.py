"""The ranking job's inputs: model syntax, config checks, the dataset reader, conditioning. No Ray."""

import csv
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wanray.config import LoraRef
from wanray.inputs import InvalidInput
from wanray.training.evaluate import (
    EvalConfig,
    EvalEntry,
    EvalModel,
    check_entries,
    check_models,
    conditioning_for,
    parse_models,
    read_split_entries,
)
from wanray.datasets.split import split_of
from wanray.video import write_mp4


def test_model_syntax():
    assert EvalModel.parse("base") == EvalModel(name="base", model="embedded", spec="base")
    assert EvalModel.parse("embedded") == EvalModel(name="embedded", model="embedded", spec="embedded")
    lora = EvalModel.parse("lora=base+runs/a.safetensors:0.8+b.safetensors")
    assert lora.name == "lora" and lora.model == "embedded" and lora.spec == "base+runs/a.safetensors:0.8+b.safetensors"
    assert lora.loras == (LoraRef(path=Path("runs/a.safetensors"), alpha=0.8), LoraRef(path=Path("b.safetensors")))
    full = EvalModel.parse("full=runs/full/model")
    assert full.model == "runs/full/model" and full.loras == ()
    big = EvalModel.parse("base", base_model="wan2.1-i2v-14b-720p")
    assert big.model == "wan2.1-i2v-14b-720p"
    assert EvalModel.parse("e=embedded+x.safetensors").model == "embedded"


@pytest.mark.parametrize(
    "text, message",
    [
        ("lora", r"model 'lora' needs a spec: write lora=base\+PATH.safetensors\[:ALPHA\]"),
        ("my model=base", "model name 'my model' must be"),
        ("../x=base", "model name '../x' must be"),
        ("x=base+", "empty part"),
        ("x=", "empty part"),
        ("x=base+w.pt", r"LoRA 'w.pt' must be a .safetensors file"),
    ],
)
def test_bad_model_specs_say_what_to_write(text, message):
    with pytest.raises(ValueError, match=message):
        EvalModel.parse(text)


def test_models_split_at_commas_and_repeat():
    models = parse_models(["base,lora=base+a.safetensors", " full=dir ,"])
    assert [m.name for m in models] == ["base", "lora", "full"]
    with pytest.raises(ValueError, match="--base-model must be"):
        parse_models(["base"], base_model="base")


def _config(**kw):
    return EvalConfig(**{"models": parse_models(["base"]), "dataset": "d", "out": "o", **kw})


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(models=parse_models(["base", "base"])), "repeated: base"),
        (dict(models=()), "at least one model"),
        (dict(split="val"), "split must be one of test, train, all"),
        (dict(frames=6), "use 5 or 9"),
        (dict(height=64), "both --height and --width"),
        (dict(height=60, width=64), "multiples of 16"),
        (dict(max_entries=0), "max_entries must be at least 1"),
        (dict(device="tpu"), "device must be auto, cpu or cuda"),
    ],
)
def test_config_is_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        _config(**kw)


def _ids(split, n):
    out, i = [], 0
    while len(out) < n:
        candidate = f"clip_{uuid.uuid4().hex[:6]}_{i}"
        if split_of(candidate) == split:
            out.append(candidate)
        i += 1
    return out


def _write_dataset(root: Path, ids, frames=5, extra=None):
    rng = np.random.default_rng()
    rows = []
    for entry_id in ids:
        Image.fromarray((rng.random((40, 32, 3)) * 255).astype("uint8")).save(root / f"{entry_id}.png")
        write_mp4(list((rng.random((frames, 32, 32, 3)) * 255).astype("uint8")), root / f"{entry_id}.mp4", 8)
        write_mp4(list((rng.random((frames, 32, 32, 3)) * 255).astype("uint8")), root / f"{entry_id}_pose.mp4", 8)
        pose = f"{entry_id}_pose.mp4"
        rows.append({"id": entry_id, "video": f"{entry_id}.mp4", "prompt": f"dance {entry_id}",
                     "input_image": f"{entry_id}.png", "control_video": pose, "vace_video": pose, **(extra or {})})
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_reader_keeps_only_the_split_with_absolute_paths(tmp_path):
    test_ids, train_ids = _ids("test", 3), _ids("train", 4)
    _write_dataset(tmp_path, train_ids + test_ids)
    entries = read_split_entries(tmp_path, "test")
    assert [e.id for e in entries] == sorted(test_ids)
    e = entries[0]
    assert e.video == (tmp_path / f"{e.id}.mp4").resolve() and e.prompt == f"dance {e.id}"
    assert e.vace_video == e.control_video == (tmp_path / f"{e.id}_pose.mp4").resolve()
    assert e.vace_video_mask is None and e.vace_reference_image is None
    assert sorted(e.id for e in read_split_entries(tmp_path, "train")) == sorted(train_ids)
    assert len(read_split_entries(tmp_path, "all")) == 7


def test_reader_confines_paths_and_names_bad_entries(tmp_path):
    ids = _ids("test", 2)
    _write_dataset(tmp_path, ids, extra={"vace_video": "../../etc/passwd"})
    with pytest.raises(ValueError, match="vace_video: '../../etc/passwd' contains '..'"):
        read_split_entries(tmp_path, "test")
    _write_dataset(tmp_path, ids)
    (tmp_path / f"{ids[1]}.mp4").unlink()
    (tmp_path / f"{ids[0]}.png").unlink()
    (tmp_path / f"{ids[0]}.png").symlink_to("/etc/hostname")
    with pytest.raises(InvalidInput) as e:
        read_split_entries(tmp_path, "test")
    assert re.search(rf"entry '{ids[0]}' \(manifest line \d\): input_image: '{ids[0]}.png' resolves to /etc/hostname, "
                     "outside the dataset root", str(e.value))
    assert re.search(rf"entry '{ids[1]}' \(manifest line \d\): video: '{ids[1]}.mp4' does not exist", str(e.value))
    (tmp_path / "metadata.csv").write_text("id,video\nx,x.mp4\n")
    with pytest.raises(ValueError, match="missing column.*prompt, input_image"):
        read_split_entries(tmp_path, "test")
    with pytest.raises(ValueError, match="not a directory"):
        read_split_entries(tmp_path / "nowhere", "test")


def test_entries_that_cannot_be_evaluated_are_all_named_before_any_model_loads(tmp_path):
    ids = _ids("test", 3)
    _write_dataset(tmp_path, ids, frames=5)
    entries = read_split_entries(tmp_path, "test")
    check_entries(entries, frames=5, fps=8)
    (tmp_path / f"{entries[1].id}.png").write_bytes(b"not a png")
    with pytest.raises(InvalidInput) as e:
        check_entries(entries, frames=9, fps=8)
    msg = str(e.value)
    assert msg.startswith("3 entries cannot be evaluated")
    assert f"entry '{entries[0].id}': video has 5 frames but the request needs 9" in msg
    assert f"entry '{entries[1].id}': input_image" in msg


def test_file_names_of_unsafe_ids_are_confined_and_distinct():
    a = EvalEntry(id="../a b", prompt="", input_image=Path("x"), video=Path("y"))
    b = EvalEntry(id="../a_b", prompt="", input_image=Path("x"), video=Path("y"))
    assert "/" not in a.file_name and not a.file_name.startswith(".")
    assert a.file_name != b.file_name
    assert EvalEntry(id="clip_1", prompt="", input_image=Path("x"), video=Path("y")).file_name == "clip_1"


def test_pose_video_goes_to_vace_and_unusable_inputs_are_reported():
    entry = EvalEntry(id="e", prompt="", input_image=Path("i.png"), video=Path("v.mp4"), control_video=Path("pose.mp4"))
    vace_model = {"vace": True, "fun_control": False}
    plain_model = {"vace": False, "fun_control": False}
    fun_model = {"vace": False, "fun_control": True}
    assert conditioning_for(entry, vace_model) == ({"vace_video": Path("pose.mp4")}, [])
    assert conditioning_for(entry, plain_model) == ({}, ["control_video"])
    assert conditioning_for(entry, fun_model) == ({"control_video": Path("pose.mp4")}, [])
    both = EvalEntry(id="e", prompt="", input_image=Path("i"), video=Path("v"), control_video=Path("c.mp4"),
                     vace_video=Path("p.mp4"), vace_reference_image=Path("r.png"))
    used, unused = conditioning_for(both, vace_model)
    assert used == {"vace_video": Path("p.mp4"), "vace_reference_image": Path("r.png")} and unused == ["control_video"]
    same = EvalEntry(id="e", prompt="", input_image=Path("i"), video=Path("v"), control_video=Path("pose.mp4"),
                     vace_video=Path("pose.mp4"))  # the datasets' convention: one pose video in both columns
    assert conditioning_for(same, vace_model) == ({"vace_video": Path("pose.mp4")}, [])
    assert conditioning_for(same, plain_model) == ({}, ["control_video", "vace_video"])


def test_missing_model_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model 'lora': LoRA file .*nope.safetensors' does not exist"):
        check_models(parse_models([f"lora=base+{tmp_path}/nope.safetensors"]))
    with pytest.raises(FileNotFoundError, match="model 'full': base .* is neither a spec name"):
        check_models(parse_models([f"full={tmp_path}/missing_dir"]))
    check_models(parse_models(["base", "wan2.2-i2v-a14b"]))  # named specs are resolved on the actor


@pytest.mark.parametrize(
    "device, asked, cluster_gpus, cpu_sized, expected",
    [
        ("auto", None, 0, True, 0),  # embedded models on a CPU cluster
        ("auto", None, 4, True, 1),  # one GPU per model
        ("auto", None, 0, False, 1),  # a 14B model: wait for GPU nodes rather than run it on CPU
        ("cuda", None, 0, True, 1),  # GPU workers from 0: the autoscaler adds them
        ("auto", 2, 8, False, 2),
        ("cpu", None, 8, False, 0),
    ],
)
def test_gpus_per_model(device, asked, cluster_gpus, cpu_sized, expected):
    from wanray.training.evaluate import _gpus_per_model

    config = _config(device=device, gpus_per_model=asked)
    assert _gpus_per_model(config, cluster_gpus, cpu_sized=cpu_sized) == expected


def test_contradictory_device_and_gpus_are_refused():
    from wanray.training.evaluate import _gpus_per_model

    with pytest.raises(ValueError, match="--device cuda needs --gpus-per-model above 0"):
        _gpus_per_model(_config(device="cuda", gpus_per_model=0), 1, cpu_sized=True)
    with pytest.raises(ValueError, match="--device cpu takes no GPUs"):
        _gpus_per_model(_config(device="cpu", gpus_per_model=1), 1, cpu_sized=True)


def test_spec_names_come_from_names_and_model_directories(tiny_spec, tmp_path):
    from wanray.training.evaluate import _spec_name

    tiny_spec.save(tmp_path)  # a model directory's wanray_spec.json (its weights are not read)
    assert _spec_name(EvalModel.parse("base")) == "embedded"
    assert _spec_name(EvalModel.parse("big=wan2.1-i2v-14b-720p")) == "wan2.1-i2v-14b-720p"
    assert _spec_name(EvalModel.parse(f"tiny={tmp_path}")) == "tiny"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell which model"):
        _spec_name(EvalModel.parse(f"what={tmp_path / 'empty'}"))


def test_relative_model_paths_are_made_absolute_for_the_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = EvalModel.parse("lora=runs/full+x/l.safetensors:0.5").resolved()
    assert m.model == str(tmp_path / "runs/full")
    assert m.loras == (LoraRef(path=tmp_path / "x/l.safetensors", alpha=0.5),)
    assert m.spec == "runs/full+x/l.safetensors:0.5" and m.name == "lora"
    assert EvalModel.parse("base").resolved().model == "embedded"
