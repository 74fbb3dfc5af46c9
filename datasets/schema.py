"""The dataset manifest: ``metadata.csv`` (or ``metadata.parquet``) at the dataset root.

One row per entry, DiffSynth-Studio's column names plus a stable ``id``; media paths are relative to
the dataset root and must stay inside it. See datasets/README.md for an example.

    rows = read_manifest("data/quick")      # list[ManifestRow]; raises ManifestError on any bad row
    path = resolve_media(root, rows[0].video, "video")   # confined to the root

``read_manifest`` is for code that needs a clean set (ingest, cache); ``wanray datasets validate``
checks every row and reports all problems instead of stopping at the first.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REQUIRED_COLUMNS = ("id", "video", "prompt", "input_image", "control_video", "vace_video")
OPTIONAL_COLUMNS = ("vace_video_mask", "vace_reference_image")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
VIDEO_COLUMNS = ("video", "control_video", "vace_video", "vace_video_mask")
IMAGE_COLUMNS = ("input_image", "vace_reference_image")
MEDIA_COLUMNS = ("video", "input_image", "control_video", "vace_video", "vace_video_mask", "vace_reference_image")
MANIFEST_FILES = ("metadata.csv", "metadata.parquet")
ROW_PROBLEM = "__row_problem__"  # set by read_records on a CSV line it could not split into the header's columns
# Ids key the split, the latent cache and file names: keep them short and free of path characters.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (missing, unreadable, wrong columns, or bad rows)."""


class RowError(ValueError):
    """One row is bad; ``reasons`` says every problem found, each naming the column."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(kw_only=True, frozen=True)
class ManifestRow:
    """One entry. Media fields are paths relative to the dataset root; absent optional ones are None."""

    line: int  # line of metadata.csv (header = 1), or 1-based row of a Parquet manifest
    id: str
    video: str
    prompt: str
    input_image: str
    control_video: str
    vace_video: str
    vace_video_mask: str | None = None
    vace_reference_image: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # other columns, passed through

    def media(self) -> dict[str, str]:
        """Column -> relative path, for the media this row has."""
        return {c: getattr(self, c) for c in MEDIA_COLUMNS if getattr(self, c)}

    def record(self) -> dict[str, str]:
        """The row as manifest cells (absent optional media as empty strings)."""
        return {**{c: getattr(self, c) or "" for c in COLUMNS}, **self.extra}


def find_manifest(root: Path | str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"dataset root {str(root)!r} is not a directory")
    for name in MANIFEST_FILES:
        if (root / name).is_file():
            return root / name
    raise ManifestError(f"{root} has no manifest: expected {' or '.join(MANIFEST_FILES)} (see datasets/README.md)")


def read_records(root: Path | str) -> tuple[Path, list[tuple[int, dict[str, str]]]]:
    """The manifest's rows as (line, cells) with empty cells as ''; checks the header, not the rows.

    ``line`` is the line of ``metadata.csv`` (the header is line 1) or the 1-based row of a Parquet
    manifest. A CSV line with the wrong number of cells comes back with a ``ROW_PROBLEM`` cell, so
    it is reported with the other bad rows instead of stopping the whole read.
    """
    path = find_manifest(root)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            header = table.column_names
            records = [(i, {k: _cell(v) for k, v in row.items()}) for i, row in enumerate(table.to_pylist(), start=1)]
        else:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, None) or []
                records = []
                for cells in reader:
                    if not any(c.strip() for c in cells):
                        continue  # blank line
                    record = dict(zip(header, cells))
                    if len(cells) != len(header):
                        record[ROW_PROBLEM] = (
                            f"{len(cells)} cells but the header has {len(header)} columns "
                            "(quote cells that contain commas)"
                        )
                    records.append((reader.line_num, record))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
        raise ManifestError(f"{path} cannot be read: {e}") from e
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise ManifestError(f"{path}: column(s) {', '.join(duplicated)} appear more than once in the header")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {', '.join(missing)}; a manifest needs {', '.join(REQUIRED_COLUMNS)} "
            f"(optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    return path, records


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None / NaN
        return ""
    return str(value)


def check_relative_path(text: str, column: str) -> list[str]:
    """Problems with a manifest path as written (before touching the disk)."""
    if "://" in text:
        return [f"{column}: {text!r} is a URL; give a path relative to the dataset root"]
    path = PurePosixPath(text.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", text):
        return [f"{column}: {text!r} is an absolute path; give it relative to the dataset root"]
    if ".." in path.parts:
        return [f"{column}: {text!r} contains '..'; paths must stay inside the dataset root"]
    return []


def parse_row(record: dict[str, str], line: int) -> ManifestRow:
    """A manifest row from its cells; raises RowError listing every schema problem."""
    cells = {k: (v or "").strip() if k != "prompt" else (v or "") for k, v in record.items()}
    reasons = [f"row: {record[ROW_PROBLEM]}"] if ROW_PROBLEM in record else []
    entry_id = cells.get("id", "")
    if not entry_id:
        reasons.append("id: empty")
    elif not ID_PATTERN.fullmatch(entry_id):
        reasons.append(f"id: {entry_id!r} must be 1-128 letters, digits or . _ : - (starting with a letter or digit)")
    if not cells.get("prompt", "").strip():
        reasons.append("prompt: empty")
    for column in MEDIA_COLUMNS:
        value = cells.get(column, "")
        if not value:
            if column in REQUIRED_COLUMNS:
                reasons.append(f"{column}: empty")
            continue
        reasons += check_relative_path(value, column)
    if reasons:
        raise RowError(reasons)
    return ManifestRow(
        line=line,
        **{c: cells[c] for c in REQUIRED_COLUMNS},
        **{c: cells.get(c) or None for c in OPTIONAL_COLUMNS},
        extra={k: v for k, v in record.items() if k not in COLUMNS and k != ROW_PROBLEM},
    )


def duplicate_ids(records: list[tuple[int, dict[str, str]]]) -> dict[str, list[int]]:
    """Ids used on more than one line -> those lines (every row counts, even one that is bad otherwise)."""
    lines: dict[str, list[int]] = {}
    for line, record in records:
        entry_id = (record.get("id") or "").strip()
        if entry_id:
            lines.setdefault(entry_id, []).append(line)
    return {k: v for k, v in lines.items() if len(v) > 1}


def read_manifest(root: Path | str, exclude_ids: frozenset[str] = frozenset()) -> list[ManifestRow]:
    """Every row of the manifest, schema-checked, ids unique. Raises ManifestError naming the bad rows.
    ``exclude_ids``: rows left out before any check (a validation report's quarantine, bad rows included)."""
    path, records = read_records(root)
    records = [(line, r) for line, r in records if (r.get("id") or "").strip() not in exclude_ids]
    rows, problems = [], []
    for line, record in records:
        try:
            rows.append(parse_row(record, line))
        except RowError as e:
            problems.append(f"line {line}: {e}")
    for entry_id, lines in duplicate_ids(records).items():
        problems.append(f"id {entry_id!r} is used on lines {', '.join(map(str, lines))}")
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ManifestError(
            f"{path}: {len(problems)} bad row(s):\n  {shown}\n"
            f"Run `wanray datasets validate {Path(root)}` for a full report and a quarantine list."
        )
    return rows


def resolve_media(root: Path | str, relative: str, column: str) -> Path:
    """The file a manifest path names, checked to exist and to resolve inside the root (symlinks too)."""
    problems = check_relative_path(relative, column)
    if problems:
        raise RowError(problems)
    root = Path(root).resolve()
    path = root / relative.replace("\\", "/")
    try:  # a name too long, a symlink loop or a NUL byte: the row's problem, not the whole run's
        resolved = path.resolve()
        inside, exists, is_file = resolved.is_relative_to(root), resolved.exists(), resolved.is_file()
    except (OSError, RuntimeError, ValueError) as e:
        raise RowError([f"{column}: {relative!r} cannot be looked up ({e})"]) from e
    if not inside:
        raise RowError([f"{column}: {relative!r} resolves to {resolved}, outside the dataset root (a symlink?)"])
    if not exists:
        raise RowError([f"{column}: {relative!r} does not exist"])
    if not is_file:
        raise RowError([f"{column}: {relative!r} is not a file"])
    return resolved


def write_manifest(root: Path | str, records: list[dict[str, str]], name: str = "metadata.csv") -> Path:
    """Write rows (dicts of cells) as a CSV manifest, atomically; known columns first, in order."""
    root = Path(root)
    extra = [k for r in records for k in r if k not in COLUMNS]
    header = list(COLUMNS) + list(dict.fromkeys(extra))
    path = root / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(records)
    tmp.replace(path)
    return path
