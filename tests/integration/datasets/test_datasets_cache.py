import random
import shutil

import pytest
import torch

from wanray.cli import main
from wanray.datasets.cache import cache_matches, cache_mismatch, complete_caches, read_latent_cache, row_to_tensors
from wanray.datasets.ingest import read_split, row_to_sample
from wanray.datasets.schema import read_records, write_manifest
from wanray.datasets.shape import VideoShape
from wanray.datasets.split import split_of
from wanray.encoding import ENCODED_KEYS, encode_sample

TINY = VideoShape(height=32, width=32, frames=5, fps=15)
TINY_ARGS = ["--height", "32", "--width", "32", "--frames", "5", "--fps", "15"]


@pytest.fixture(scope="module")
def two_entry_set(ray_set, tmp_path_factory):
    """Two entries of the session set, one of each split when the set has both."""
    root = tmp_path_factory.mktemp("cache_set") / "set"
    shutil.copytree(ray_set, root)
    records = [rec for _, rec in read_records(root)[1]]
    by_split = {split_of(r["id"]): r for r in records}
    chosen = list(by_split.values()) if len(by_split) == 2 else records[:2]
    write_manifest(root, chosen)
    return root


@pytest.fixture(scope="module")
def cache_dir(two_entry_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "latents"
    # both entries in one actor call: their VAE encodes batched (wanray.encoding.encode_samples)
    assert main(["datasets", "cache", str(two_entry_set), "--out", str(out), "--split", "all", *TINY_ARGS,
                 "--batch-size", "2"]) == 0
    return out


def test_cache_round_trip_equals_direct_encoding(cache_dir, two_entry_set):
    from wanray import ModelConfig
    from wanray.generation import WanGenerator

    # the cache's VAE runs in float32 on a CPU, whatever generation's timed bf16 choice (vae_dtype auto) says here
    generator = WanGenerator.load(ModelConfig(model="embedded", vae_dtype="float32"))
    cached = {r["id"]: row_to_tensors(r) for r in read_latent_cache(cache_dir, "all").iter_rows()}
    decoded = {r["id"]: r for r in read_split(two_entry_set, "all", height=32, width=32, frames=5).iter_rows()}
    assert sorted(cached) == sorted(decoded) and len(cached) == 2
    for entry_id, row in decoded.items():
        # the embedded model takes the pose as its VACE video; a control video would overwrite y's first frame
        sample = row_to_sample(row)
        sample.control_video = None
        direct = encode_sample(generator.pipe, sample)
        assert set(cached[entry_id]) == set(direct) == set(ENCODED_KEYS)
        for key, value in direct.items():
            got = cached[entry_id][key]
            assert got.dtype == value.dtype and got.shape == value.shape, key
            torch.testing.assert_close(got, value, rtol=1e-4, atol=1e-5, msg=f"{entry_id} {key}")


def test_cache_matches_its_model_shape_and_the_datasets_current_files(cache_dir, two_entry_set, tmp_path, capsys):
    data = dict(dataset=two_entry_set)
    assert cache_matches(cache_dir, "embedded", TINY, split="all", **data)
    # the training config's (frames, height, width); "all" covers train
    assert cache_matches(cache_dir, "embedded", (5, 32, 32), **data)
    assert not cache_matches(cache_dir, "embedded", (9, 32, 32), **data)
    assert not cache_matches(cache_dir, "embedded", VideoShape(height=32, width=32, frames=5, fps=10), **data)
    assert not cache_matches(cache_dir / "missing", "embedded", TINY, **data)

    copy = tmp_path / "copy"  # copied with its files' times: the same content, somewhere else
    shutil.copytree(two_entry_set, copy)
    assert cache_mismatch(cache_dir, "embedded", TINY, "all", dataset=copy) is None
    records = [rec for _, rec in read_records(copy)[1]]
    edited = random.choice(records)
    edited["prompt"] += " under a red sky"
    write_manifest(copy, records)
    stale = cache_mismatch(cache_dir, "embedded", TINY, "all", dataset=copy)
    assert stale.endswith(f"1 entry is new or changed since it was made (e.g. {edited['id']})")
    write_manifest(copy, [rec for _, rec in read_records(two_entry_set)[1]])
    touched = copy / random.choice(records)["video"]
    touched.write_bytes(touched.read_bytes())  # same bytes, a new modification time: re-encoded to be safe
    assert "1 entry is new or changed" in cache_mismatch(cache_dir, "embedded", TINY, "all", dataset=copy)
    # rebuilding into that folder without --overwrite says why it is stale
    assert main(["datasets", "cache", str(copy), "--out", str(cache_dir), "--split", "all", *TINY_ARGS]) == 1
    assert "1 entry is new or changed since it was made; pass --overwrite" in capsys.readouterr().err


def test_a_split_reads_its_rows_from_an_all_cache_and_a_fingerprint_picks_the_cache(cache_dir, two_entry_set):
    ids = [rec["id"] for _, rec in read_records(two_entry_set)[1]]
    (meta,) = complete_caches(cache_dir)
    assert meta["count"] == 2 and sorted(meta["ids"]) == sorted(ids) and meta["shape"] == TINY.as_dict()
    rows = read_latent_cache(cache_dir, "train", fingerprint=meta["fingerprint"]).select_columns(["id", "split"])
    got = sorted((r["id"], r["split"]) for r in rows.iter_rows())
    assert got == sorted((i, "train") for i in ids if split_of(i) == "train")
    with pytest.raises(FileNotFoundError, match="no complete 'all' cache with fingerprint 0123456789abcdef"):
        read_latent_cache(cache_dir, "all", fingerprint="0123456789abcdef")


def test_a_complete_cache_is_not_rebuilt_without_overwrite(cache_dir, two_entry_set, capsys):
    args = ["datasets", "cache", str(two_entry_set), "--out", str(cache_dir), "--split", "all", *TINY_ARGS]
    assert main(args) == 1
    assert "already complete; pass --overwrite" in capsys.readouterr().err
