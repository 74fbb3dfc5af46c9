import json

import numpy as np
import pytest
from PIL import Image

from wanray.datasets.ingest import media, read_split, row_to_sample
from wanray.datasets.media import read_frames
from wanray.datasets.schema import read_manifest, read_records, write_manifest
from wanray.datasets.split import split_of
from wanray.video import fit, write_mp4


def test_rows_have_the_job_shape_and_dtypes(ray_set):
    rows = list(read_split(ray_set, "all", height=64, width=64, frames=9, fps=15).iter_rows())
    assert sorted(r["id"] for r in rows) == [r.id for r in read_manifest(ray_set)]
    for row in rows:
        assert isinstance(row["prompt"], str) and row["prompt"]
        for column in ("video", "control_video", "vace_video"):
            assert row[column].shape == (9, 64, 64, 3) and row[column].dtype == np.uint8
        assert row["input_image"].shape == (64, 64, 3) and row["input_image"].dtype == np.uint8
        assert row["vace_video_mask"] is None and row["vace_reference_image"] is None
        sample = row_to_sample(row)
        assert len(sample.video) == 9 and sample.video[0].size == (64, 64) and sample.vace_video_mask is None


def test_frames_are_sampled_at_the_job_fps_and_fitted_to_its_size(ray_set):
    row = next(iter(read_split(ray_set, "all", height=32, width=48, frames=5, fps=7.5).iter_rows()))
    entry = next(r for r in read_manifest(ray_set) if r.id == row["id"])
    source, fps = read_frames(ray_set / entry.video)
    assert fps == 15
    expected = np.stack([np.asarray(fit(Image.fromarray(source[i]), 48, 32)) for i in (0, 2, 4, 6, 8)])
    assert row["video"].shape == (5, 32, 48, 3) and np.array_equal(row["video"], expected)
    assert np.array_equal(row["input_image"], np.asarray(fit(Image.open(ray_set / entry.input_image), 48, 32)))


def test_splits_are_chosen_before_decoding_and_partition_the_set(ray_set):
    def ids(split):
        return [r["id"] for r in read_split(ray_set, split, height=32, width=32, frames=5).iter_rows()]

    train, test = ids("train"), ids("test")
    assert sorted(train + test) == [r.id for r in read_manifest(ray_set)]
    assert all(split_of(i) == "train" for i in train) and all(split_of(i) == "test" for i in test)


def test_a_split_without_entries_is_an_empty_dataset(ray_set_copy):
    records = [rec for _, rec in read_records(ray_set_copy)[1] if split_of(rec["id"]) == "train"]
    write_manifest(ray_set_copy, records)
    assert read_split(ray_set_copy, "test", height=32, width=32, frames=5).count() == 0


def test_a_mask_on_some_rows_only_comes_back_as_none_on_the_others(ray_set_copy):
    records = [rec for _, rec in read_records(ray_set_copy)[1]]
    white = [Image.new("RGB", (64, 64), (255, 255, 255))] * 9
    write_mp4(white, ray_set_copy / "masks" / "white.mp4", 15)
    with_mask = {records[1]["id"], records[4]["id"]}
    for rec in records:
        rec["vace_video_mask"] = "masks/white.mp4" if rec["id"] in with_mask else ""
    write_manifest(ray_set_copy, records)
    ds = read_split(ray_set_copy, "all", height=64, width=64, frames=9, batch_size=2)
    batch = next(iter(ds.iter_batches(batch_size=6, batch_format="numpy")))  # rows of several blocks together
    for entry_id, mask in zip(batch["id"], batch["vace_video_mask"]):
        row = {"vace_video_mask": mask}
        if entry_id in with_mask:
            assert media(row, "vace_video_mask").shape == (9, 64, 64, 3) and media(row, "vace_video_mask").min() > 240
        else:
            assert media(row, "vace_video_mask") is None
    samples = {r["id"]: row_to_sample(r) for r in ds.iter_rows()}
    assert {i for i, s in samples.items() if s.vace_video_mask is not None} == with_mask


def test_an_unreadable_video_fails_the_read_naming_the_entry(ray_set_copy):
    rows = read_manifest(ray_set_copy)
    (ray_set_copy / rows[3].video).write_bytes(b"not a video")
    with pytest.raises(Exception, match=f"entry '{rows[3].id}': video .* could not be decoded"):
        list(read_split(ray_set_copy, "all", height=32, width=32, frames=5).iter_rows())


def test_ray_train_workers_each_get_a_disjoint_shard_of_training_samples(ray_set, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    sink = tmp_path / "seen"
    sink.mkdir()

    def train_loop_per_worker(config):
        import ray.train

        from wanray.datasets.ingest import iter_samples

        seen = []
        for entry_id, sample in iter_samples(ray.train.get_dataset_shard("train")):
            seen.append({"id": entry_id, "frames": len(sample.video), "size": list(sample.video[0].size)})
        rank = ray.train.get_context().get_world_rank()
        (config["sink"] / f"rank{rank}.json").write_text(json.dumps(seen))
        ray.train.report({"rows": len(seen)})

    ds = read_split(ray_set, "all", height=32, width=32, frames=5)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"sink": sink},
        datasets={"train": ds},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="ingest-shards", storage_path=str(tmp_path / "runs")),
    )
    trainer.fit()
    shards = [json.loads((sink / f"rank{r}.json").read_text()) for r in (0, 1)]
    ids = [[s["id"] for s in shard] for shard in shards]
    assert set(ids[0]).isdisjoint(ids[1])
    assert sorted(ids[0] + ids[1]) == [r.id for r in read_manifest(ray_set)]
    assert all(s["frames"] == 5 and s["size"] == [32, 32] for shard in shards for s in shard)
