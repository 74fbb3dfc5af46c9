"""Cache keys, without Ray: fingerprints of (model files, shape)."""

import json
import random

import pytest

from wanray.datasets.cache import as_shape, fingerprint
from wanray.datasets.shape import VideoShape


def test_fingerprint_names_model_and_shape():
    base = fingerprint("embedded", VideoShape(height=64, width=64, frames=9, fps=15))
    assert base == fingerprint("embedded", (9, 64, 64)) == fingerprint("embedded", (9, 64, 64, 15.0))
    others = {fingerprint("embedded", s) for s in [(13, 64, 64), (9, 64, 80), (9, 80, 64), (9, 64, 64, 12)]}
    assert base not in others and len(others) == 4


def test_fingerprint_follows_the_model_files(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    shape = (9, 64, 64)
    assert fingerprint(str(copy), shape) == fingerprint(str(tiny_model_dir), shape)
    vae = copy / "Wan2.1_VAE.pth"
    data = bytearray(vae.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte different (the hash reads each file's first and last MiB)
    vae.write_bytes(bytes(data))
    assert fingerprint(str(copy), shape) != fingerprint(str(tiny_model_dir), shape)


def test_shapes_given_as_tuples_must_be_complete():
    with pytest.raises(ValueError, match=r"\(frames, height, width\[, fps\]\)"):
        as_shape((64, 64))


def test_reading_without_a_fingerprint_is_refused_when_caches_of_two_models_could_serve_the_split(tmp_path):
    from wanray.datasets.cache import read_latent_cache

    a, b = (f"{random.getrandbits(64):016x}" for _ in range(2))
    for fp, split in ((a, "train"), (b, "all")):  # one model's exact train cache, another's train+test cache
        (tmp_path / fp).mkdir()
        (tmp_path / fp / f"{split}.json").write_text(json.dumps({"fingerprint": fp, "split": split}))
    with pytest.raises(ValueError, match=f"several models or shapes .*{min(a, b)}.*pass fingerprint="):
        read_latent_cache(tmp_path, "train")


def test_a_cache_made_without_a_reports_quarantine_matches_its_set_bad_rows_and_all(fresh_set, tmp_path):
    from wanray.datasets.cache import _marker, cache_mismatch, entry_digests
    from wanray.datasets.ingest import IngestConfig, entry_table
    from wanray.datasets.schema import read_records, write_manifest

    shape = VideoShape(height=32, width=32, frames=5, fps=15)
    good = entry_table(IngestConfig(root=fresh_set, split="all"))
    marker = _marker(tmp_path, fingerprint("embedded", shape), "all")  # as build_cache writes it, without encoding
    marker.parent.mkdir()
    records = [r for _, r in read_records(fresh_set)[1]]
    bad = {**random.choice(records), "id": "quarantined-1", "prompt": ""}  # fails the schema: an empty prompt
    write_manifest(fresh_set, [*records, bad])
    marker.write_text(json.dumps({"fingerprint": marker.parent.name, "split": "all",
                                  "entries": entry_digests(fresh_set, good), "excluded": ["quarantined-1"]}))
    assert cache_mismatch(tmp_path, "embedded", shape, "all", dataset=fresh_set) is None
