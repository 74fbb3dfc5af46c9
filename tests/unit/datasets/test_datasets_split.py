import uuid

from wanray.datasets.schema import read_manifest, write_manifest
from wanray.datasets.split import select_split, split_counts, split_of


def _random_ids(n):
    return [uuid.uuid4().hex for _ in range(n)]


def test_split_is_about_one_in_ten_and_counts_add_up():
    ids = _random_ids(20_000)
    counts = split_counts(ids)
    assert counts["train"] + counts["test"] == counts["total"] == 20_000
    # binomial(20000, 0.1): standard deviation 42 rows; 0.09..0.11 is more than 4.7 of them
    assert 0.09 < counts["test"] / 20_000 < 0.11
    assert {split_of(i) for i in ids} == {"train", "test"}


def test_adding_rows_never_moves_an_existing_row(base_set, tmp_path):
    rows = read_manifest(base_set)
    records = [r.record() for r in rows]
    before = {r.id: split_of(r.id) for r in rows}
    extra = []
    for i, new_id in enumerate(_random_ids(300)):
        extra.append({**records[i % len(records)], "id": new_id})
    root = tmp_path / "grown"
    root.mkdir()
    write_manifest(root, extra[:150] + records + extra[150:])  # old rows now in the middle of new ones
    grown = read_manifest(root)
    after = {r.id: split_of(r.id) for r in grown}
    assert all(after[k] == v for k, v in before.items())
    train, test = select_split(grown, "train"), select_split(grown, "test")
    assert len(train) + len(test) == len(grown) == 303
    assert {r.id for r in train}.isdisjoint({r.id for r in test})
    assert [r.id for r in select_split(grown, "all")] == [r.id for r in grown]
