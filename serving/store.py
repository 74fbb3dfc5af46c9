"""Where videos and uploaded photos live: a local folder by default, any fsspec URI on clusters.

Keys are built from job ids only (``videos/<id>.mp4``, ``inputs/<id>``), never from user strings. Every
replica (ingress and generators) must see the same store: a local folder works on one node; a cluster
uses object storage (``s3://bucket/prefix`` through s3fs, any S3-compatible endpoint) or a shared mount.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from wanray.serving.jobs import is_job_id


def video_key(job_id: str) -> str:
    return f"videos/{_checked(job_id)}.mp4"


def input_key(job_id: str) -> str:
    return f"inputs/{_checked(job_id)}"


def _checked(job_id: str) -> str:
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


class VideoStore:
    """A thin wrapper over an fsspec filesystem rooted at ``uri``."""

    def __init__(self, uri: str):
        from fsspec.core import url_to_fs

        if "://" not in uri:
            Path(uri).mkdir(parents=True, exist_ok=True)
            uri = str(Path(uri).resolve())
        try:
            self.fs, self.root = url_to_fs(uri)
        except ImportError as e:
            raise ImportError(f"the store {uri!r} needs an fsspec driver that is not installed ({e}); "
                              f"e.g. pip install s3fs for s3://") from e
        self.uri = uri
        self.root = self.root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    @property
    def is_local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def put_bytes(self, key: str, data: bytes) -> None:
        self.fs.makedirs(self.path(key).rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(self.path(key), "wb") as f:
            f.write(data)

    def put_file(self, local_path: Path | str, key: str) -> None:
        self.fs.makedirs(self.path(key).rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(str(local_path), self.path(key))

    def get_bytes(self, key: str) -> bytes:
        with self.fs.open(self.path(key), "rb") as f:
            return f.read()

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def size(self, key: str) -> int:
        return int(self.fs.size(self.path(key)))

    def delete(self, key: str) -> None:
        if self.fs.exists(self.path(key)):
            self.fs.rm(self.path(key))

    def objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, modification time as a Unix timestamp) of each object directly under ``prefix/``."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return
        for info in self.fs.ls(base, detail=True):
            if info.get("type") != "directory":
                name = info["name"].rstrip("/").rsplit("/", 1)[-1]
                yield f"{prefix}/{name}", self.fs.modified(info["name"]).timestamp()

    def local_path(self, key: str) -> Path | None:
        """The file on this machine's disk, when the store is a local folder."""
        return Path(self.path(key)) if self.is_local else None

    def iter_bytes(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        with self.fs.open(self.path(key), "rb") as f:
            while block := f.read(chunk):
                yield block
