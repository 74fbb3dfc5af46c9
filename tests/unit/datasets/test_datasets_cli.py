import json

from wanray.cli import main
from wanray.datasets.schema import read_manifest
from wanray.datasets.split import split_counts


def test_split_prints_the_counts_and_counts_rows_that_fail_the_schema(fresh_set, capsys):
    counts = split_counts(r.id for r in read_manifest(fresh_set))
    assert main(["datasets", "split", str(fresh_set), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {**counts, "unreadable_rows": 0}
    with (fresh_set / "metadata.csv").open("a") as f:
        f.write("bad id,,,,,\n")
    assert main(["datasets", "split", str(fresh_set)]) == 0
    out = capsys.readouterr().out
    assert f"train {counts['train']}  test {counts['test']}  total 3" in out and "+1 rows that fail the schema" in out
    # a row that repeats an id is not a fourth entry: both rows of that id are left out, as validate quarantines them
    lines = (fresh_set / "metadata.csv").read_text().splitlines()
    (fresh_set / "metadata.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    assert main(["datasets", "split", str(fresh_set), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 2


def test_show_summarises_a_set_and_one_entry(fresh_set, capsys):
    rows = read_manifest(fresh_set)
    assert main(["datasets", "show", str(fresh_set)]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "dance: " in out
    assert main(["datasets", "show", str(fresh_set), "--id", rows[1].id]) == 0
    out = capsys.readouterr().out
    assert rows[1].prompt in out and "9 frames, 15 fps, 64x64" in out
    assert main(["datasets", "show", str(fresh_set), "--id", "nope"]) == 1
