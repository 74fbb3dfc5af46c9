import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wanray.datasets.schema import (
    ManifestError,
    RowError,
    read_manifest,
    read_records,
    resolve_media,
    write_manifest,
)


def test_csv_and_parquet_manifests_read_the_same(fresh_set):
    csv_rows = read_manifest(fresh_set)
    table = pa.Table.from_pylist([r.record() for r in csv_rows])
    (fresh_set / "metadata.csv").unlink()
    pq.write_table(table, fresh_set / "metadata.parquet")
    parquet_rows = read_manifest(fresh_set)
    assert [r.record() for r in parquet_rows] == [r.record() for r in csv_rows]
    assert parquet_rows[0].vace_video_mask is None and parquet_rows[0].extra["dance"]


def test_missing_manifest_and_missing_columns_say_what_is_needed(tmp_path):
    with pytest.raises(ManifestError, match="metadata.csv or metadata.parquet"):
        read_manifest(tmp_path)
    (tmp_path / "metadata.csv").write_text("id,video,prompt\na,v.mp4,hi\n")
    with pytest.raises(ManifestError, match="missing column.*input_image, control_video, vace_video"):
        read_manifest(tmp_path)


def test_bad_rows_are_all_named_not_just_the_first(fresh_set):
    records = [r.record() for r in read_manifest(fresh_set)]
    records[0]["prompt"] = "  "
    records[1]["video"] = "../outside.mp4"
    records[2]["id"] = records[0]["id"]
    write_manifest(fresh_set, records)
    with pytest.raises(ManifestError) as e:
        read_manifest(fresh_set)
    text = str(e.value)
    assert "line 2: prompt: empty" in text
    assert "line 3: video: '../outside.mp4' contains '..'" in text
    assert f"id {records[0]['id']!r} is used on lines 2, 4" in text
    assert "wanray datasets validate" in text


def test_a_csv_line_with_the_wrong_cell_count_is_a_row_problem(fresh_set):
    lines = (fresh_set / "metadata.csv").read_text().splitlines()
    lines[2] = lines[2] + ",one too many"
    (fresh_set / "metadata.csv").write_text("\n".join(lines) + "\n")
    _, records = read_records(fresh_set)
    assert [line for line, _ in records] == [2, 3, 4]
    with pytest.raises(ManifestError, match="line 3: row: .* cells but the header has"):
        read_manifest(fresh_set)


@pytest.mark.parametrize(
    "relative, message",
    [
        ("../x.mp4", "contains '..'"),
        ("/etc/passwd", "absolute path"),
        ("C:/data/x.mp4", "absolute path"),
        ("https://example.com/x.mp4", "is a URL"),
        ("videos/none.mp4", "does not exist"),
        ("videos", "is not a file"),
    ],
)
def test_resolve_media_refuses_paths_that_leave_the_root_or_do_not_exist(fresh_set, relative, message):
    with pytest.raises(RowError, match=message):
        resolve_media(fresh_set, relative, "video")


def test_resolve_media_refuses_a_symlink_out_of_the_root(fresh_set, tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x")
    os.symlink(outside, fresh_set / "videos" / "link.mp4")
    with pytest.raises(RowError, match="outside the dataset root"):
        resolve_media(fresh_set, "videos/link.mp4", "video")
    inside = next((fresh_set / "videos").glob("s*.mp4"))
    os.symlink(inside, fresh_set / "videos" / "inside.mp4")
    assert resolve_media(fresh_set, "videos/inside.mp4", "video") == inside.resolve()
