"""One fixture per kind of bad row: each corrupts one entry of a fresh 3-entry set in one way."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from wanray.cli import main
from wanray.datasets.ingest import IngestConfig, entry_table, quarantined_ids
from wanray.datasets.schema import read_records, write_manifest
from wanray.datasets.shape import VideoShape
from wanray.datasets.validate import ValidationConfig, validate
from wanray.video import read_video, write_mp4

JOB = VideoShape(height=64, width=64, frames=9, fps=15)


def _records(root):
    return [record for _, record in read_records(root)[1]]


def _edit(root, index, **cells):
    records = _records(root)
    records[index].update(cells)
    write_manifest(root, records)
    return records[index]["id"]


def _rewrite_video(root, relative, new_relative, *, frames=None, fps=15, size=None):
    video, _ = read_video(root / relative)
    video = video[:frames] if frames else video
    if size:
        video = [f.resize(size) for f in video]
    write_mp4(video, root / new_relative, fps)


def _garbage(path):
    path.write_bytes(np.random.default_rng().bytes(4096))


def missing_file(root):
    rec = _records(root)[0]
    (root / rec["video"]).unlink()
    return rec["id"], "does not exist", None


def dot_dot_path(root):
    return _edit(root, 0, video="../elsewhere/video.mp4"), "contains '..'", None


def absolute_path(root):
    return _edit(root, 0, input_image="/etc/hostname"), "absolute path", None


def symlink_out_of_root(root):
    outside = root.parent / "outside.png"
    Image.new("RGB", (64, 64)).save(outside)
    os.symlink(outside, root / "photos" / "escape.png")
    return _edit(root, 0, input_image="photos/escape.png"), "outside the dataset root", None


def undecodable_video(root):
    rec = _records(root)[0]
    _garbage(root / rec["video"])
    return rec["id"], "could not be decoded as a video", None


def undecodable_image(root):
    rec = _records(root)[0]
    _garbage(root / rec["input_image"])
    return rec["id"], "could not be read as an image", None


def truncated_jpeg(root):
    rec = _records(root)[0]
    path = root / "photos" / "cut.jpg"
    Image.open(root / rec["input_image"]).convert("RGB").save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # its header is whole: only decoding fails
    return _edit(root, 0, input_image="photos/cut.jpg"), "cut short or damaged", None


def image_without_a_suffix_ingest_reads(root):
    rec = _records(root)[0]
    (root / rec["input_image"]).rename(root / "photos" / "first_frame")
    return _edit(root, 0, input_image="photos/first_frame"), "must be one of .jpg", None


def name_too_long(root):
    return _edit(root, 0, input_image="photos/" + "x" * 300 + ".png"), "cannot be looked up", None


def symlink_loop(root):
    os.symlink(root / "photos" / "loop.png", root / "photos" / "loop.png")
    return _edit(root, 0, input_image="photos/loop.png"), "cannot be looked up", None


def frame_counts_disagree(root):
    rec = _records(root)[0]
    _rewrite_video(root, rec["control_video"], "poses/short.mp4", frames=5)
    return _edit(root, 0, control_video="poses/short.mp4"), "frame counts disagree: video 9, control_video 5", None


def fps_disagree(root):
    rec = _records(root)[0]
    _rewrite_video(root, rec["vace_video"], "poses/fast.mp4", fps=30)
    return _edit(root, 0, vace_video="poses/fast.mp4"), "fps disagree", None


def sizes_disagree(root):
    rec = _records(root)[0]
    _rewrite_video(root, rec["vace_video"], "poses/small.mp4", size=(32, 32))
    return _edit(root, 0, vace_video="poses/small.mp4"), "sizes disagree", None


def first_frame_size(root):
    rec = _records(root)[0]
    Image.open(root / rec["input_image"]).resize((48, 48)).save(root / "photos/small.png")
    return _edit(root, 0, input_image="photos/small.png"), "input_image is 48x48 but video is 64x64", None


def too_short_for_the_job(root):
    rec = _records(root)[0]
    for column, new in (("video", "videos/short.mp4"), ("control_video", "poses/short.mp4")):
        _rewrite_video(root, rec[column], new, frames=5)
    entry = _edit(root, 0, video="videos/short.mp4", control_video="poses/short.mp4", vace_video="poses/short.mp4")
    return entry, "5 frames at 15 fps (0.33 s) is shorter than the job's 9 frames", JOB


def too_small_for_the_job(root):
    rec = _records(root)[0]
    for column, new in (("video", "videos/small.mp4"), ("control_video", "poses/small.mp4")):
        _rewrite_video(root, rec[column], new, size=(32, 32))
    Image.open(root / rec["input_image"]).resize((32, 32)).save(root / "photos/small.png")
    entry = _edit(
        root,
        0,
        video="videos/small.mp4",
        control_video="poses/small.mp4",
        vace_video="poses/small.mp4",
        input_image="photos/small.png",
    )
    return entry, "32x32 is smaller than the job's 64x64", JOB


def empty_prompt(root):
    return _edit(root, 0, prompt="   "), "prompt: empty", None


def prompt_too_long(root):
    words = " ".join(np.random.default_rng().choice(["dance", "wave", "anime", "girl", "colour"], size=80))
    return _edit(root, 0, prompt=words), "tokens, but embedded reads 64", None


def empty_required_cell(root):
    return _edit(root, 0, vace_video=""), "vace_video: empty", None


def bad_id(root):
    return _edit(root, 0, id="has space"), "id: 'has space' must be", None


def wrong_cell_count(root):
    lines = (root / "metadata.csv").read_text().splitlines()
    lines[1] += ",surplus"
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return _records(root)[0]["id"], "cells but the header has", None


def duplicate_id(root):
    first = _records(root)[0]["id"]
    _edit(root, 1, id=first)
    return first, "is also used on line(s)", None


KINDS = [
    missing_file,
    dot_dot_path,
    absolute_path,
    symlink_out_of_root,
    undecodable_video,
    undecodable_image,
    truncated_jpeg,
    image_without_a_suffix_ingest_reads,
    name_too_long,
    symlink_loop,
    frame_counts_disagree,
    fps_disagree,
    sizes_disagree,
    first_frame_size,
    too_short_for_the_job,
    too_small_for_the_job,
    empty_prompt,
    prompt_too_long,
    empty_required_cell,
    bad_id,
    wrong_cell_count,
    duplicate_id,
]


@pytest.fixture(params=KINDS, ids=[k.__name__ for k in KINDS])
def bad_set(request, fresh_set):
    ids_before = [r["id"] for r in _records(fresh_set)]
    bad, message, job = request.param(fresh_set)
    return fresh_set, ids_before, bad, message, job


def test_each_kind_of_bad_row_is_quarantined_with_its_reason(bad_set):
    root, ids_before, bad, message, job = bad_set
    report = validate(ValidationConfig(root=root, shape=job))
    assert report.total == 3 == report.accepted + report.quarantined
    quarantined = [p for p in report.quarantine]
    assert {p.id for p in quarantined} == {bad}, report.table()
    assert all(any(message in reason for reason in p.reasons) for p in quarantined), report.table()
    # the first row is the bad one and every other row is accepted; a duplicated id takes both of its rows out
    duplicated = message == "is also used on line(s)"
    assert report.accepted_ids == ids_before[2:] if duplicated else ids_before[1:]
    assert len(quarantined) == (2 if duplicated else 1)


def test_ingest_leaves_out_the_reports_quarantine_whatever_was_wrong_with_it(bad_set, tmp_path):
    root, ids_before, bad, message, job = bad_set
    report = validate(ValidationConfig(root=root, shape=job))
    (tmp_path / "report.json").write_text(json.dumps(report.to_json()))
    table = entry_table(IngestConfig(root=root, split="all", exclude_ids=quarantined_ids(tmp_path / "report.json")))
    assert [e["id"] for e in table] == report.accepted_ids


def test_a_clean_set_is_fully_accepted_and_split(fresh_set):
    report = validate(ValidationConfig(root=fresh_set, shape=JOB))
    assert report.quarantined == 0 and report.accepted == report.total == 3
    data = report.to_json()
    assert data["split"]["train"] + data["split"]["test"] == 3 and data["tokenizer"]["max_tokens"] == 64


def test_cli_reports_table_json_and_quarantine_and_fails_only_when_strict(fresh_set, tmp_path, capsys):
    bad, _, _ = undecodable_video(fresh_set)
    report_path, quarantine_path = tmp_path / "report.json", tmp_path / "quarantine.csv"
    args = [
        "datasets",
        "validate",
        str(fresh_set),
        "--report",
        str(report_path),
        "--quarantine",
        str(quarantine_path),
        "--height",
        "64",
        "--width",
        "64",
        "--frames",
        "9",
        "--fps",
        "15",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert bad in out and "could not be decoded as a video" in out and "3 rows: 2 accepted" in out
    report = json.loads(report_path.read_text())
    assert (report["total"], report["accepted"], report["quarantined"]) == (3, 2, 1)
    assert report["quarantine"][0]["id"] == bad and report["quarantine"][0]["record"]["video"].endswith(".mp4")
    quarantined = _records_of(quarantine_path)
    assert [r["id"] for r in quarantined] == [bad] and "could not be decoded" in quarantined[0]["reasons"]
    assert main(args + ["--strict"]) == 1


def test_cli_needs_all_four_shape_values(fresh_set, capsys):
    assert main(["datasets", "validate", str(fresh_set), "--height", "64"]) == 1
    assert "missing --width, --frames, --fps" in capsys.readouterr().err


def _records_of(csv_path):
    import csv

    with csv_path.open() as f:
        return list(csv.DictReader(f))
