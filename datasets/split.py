"""Deterministic 9:1 train/test split from a hash of each entry's id.

An entry's split depends on its id alone, so adding (or removing) rows never moves an existing
entry across the split, and every machine computes the same split without coordination.

    split_of("s0-00042")            # "train" or "test"
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable, Literal, TypeVar

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")
TEST_BUCKETS = 1  # of 10: a 9:1 split

T = TypeVar("T")


def split_of(entry_id: str) -> Split:
    """``test`` for ids whose SHA-256 falls in bucket 0 of 10, else ``train``."""
    digest = hashlib.sha256(entry_id.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") % 10 < TEST_BUCKETS else "train"


def check_split(split: str) -> str:
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    return split


def select_split(rows: Iterable[T], split: str, key=lambda row: row.id) -> list[T]:
    """The rows of one split (``all``: every row), in their original order."""
    check_split(split)
    return [r for r in rows if split == "all" or split_of(key(r)) == split]


def split_counts(ids: Iterable[str]) -> dict[str, int]:
    """{"train": n, "test": m, "total": n + m}."""
    counts = Counter(split_of(i) for i in ids)
    return {"train": counts["train"], "test": counts["test"], "total": counts["train"] + counts["test"]}
