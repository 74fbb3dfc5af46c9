"""The video store: a local folder, or any fsspec URI (memory:// here, s3:// on clusters)."""

import uuid

import pytest

from wanray.serving.store import VideoStore, input_key, video_key


@pytest.mark.parametrize("kind", ["folder", "memory"])
def test_put_get_stream_delete(kind, tmp_path):
    uri = str(tmp_path / "store") if kind == "folder" else f"memory://wanray-{uuid.uuid4().hex}"
    store = VideoStore(uri)
    job_id = uuid.uuid4().hex
    data = bytes(range(256)) * 5000
    store.put_bytes(input_key(job_id), data)
    assert store.exists(input_key(job_id)) and store.get_bytes(input_key(job_id)) == data
    local = tmp_path / "v.mp4"
    local.write_bytes(data[::-1])
    store.put_file(local, video_key(job_id))
    assert store.size(video_key(job_id)) == len(data)
    assert b"".join(store.iter_bytes(video_key(job_id), chunk=1000)) == data[::-1]
    assert (store.local_path(video_key(job_id)) is not None) == (kind == "folder")
    store.delete(input_key(job_id))
    assert not store.exists(input_key(job_id))
    store.delete(input_key(job_id))  # deleting twice is fine


def test_keys_come_from_job_ids_only():
    with pytest.raises(ValueError, match="not a job id"):
        video_key("../../etc/passwd")
    with pytest.raises(ValueError, match="not a job id"):
        input_key("ABC")
