"""The seed's weighted score: human ratings plus PSNR and SSIM, and the ratings CSV it reads them from.

    total = (subjective / 20) * 0.5 + (PSNR / 50) * 0.25 + SSIM * 0.25

- subjective: the sum of four 1-5 ratings (dynamic performance, camera control, frame quality, target
  accuracy), so 4..20; with several raters of one video, the mean of their sums.
- PSNR: the video's mean per-frame PSNR in dB, counted up to 50 dB (above 50 counts as 50, so the part
  stays within its 0.25 weight; identical frames would otherwise add 0.5). SSIM: mean grey SSIM.

Ratings CSV (UTF-8, one row per rater x model x entry; the header names exactly these columns, in any
order)::

    rater,model,entry,dynamic,camera,quality,accuracy
    ana,lora,clip_0042,4,3,5,4

Each rating is a whole number from 1 to 5. A row whose four ratings are all empty is "not rated yet"
(the template ``wanray eval`` writes has one per model and entry) and is skipped; any other problem is
an error naming the line. Missing ratings are never assumed: a model's total is *complete* only when
every entry it was evaluated on has at least one rating. Otherwise the total is *partial* (the PSNR and
SSIM parts only, at most 0.5), says so in its ``basis``, and ranks after every complete total
(partial totals are ordered among themselves), so an unrated model can never outrank a rated one by
the missing half of the formula.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

SUBJECTIVE_WEIGHT, PSNR_WEIGHT, SSIM_WEIGHT = 0.5, 0.25, 0.25
SUBJECTIVE_MAX = 20
PSNR_FULL_MARKS = 50.0  # dB
RATING_FIELDS = ("dynamic", "camera", "quality", "accuracy")
RATING_MEANINGS = {
    "dynamic": "dynamic performance",
    "camera": "camera control",
    "quality": "frame quality",
    "accuracy": "target accuracy",
}
RATING_COLUMNS = ("rater", "model", "entry", *RATING_FIELDS)
MAX_ERRORS_SHOWN = 20


class RatingsError(ValueError):
    """The ratings CSV has problems; the message lists them by line."""


@dataclass(frozen=True, kw_only=True)
class Rating:
    """One rater's four 1-5 ratings of one model's video for one entry (``line``: its line in the CSV)."""

    rater: str
    model: str
    entry: str
    dynamic: int
    camera: int
    quality: int
    accuracy: int
    line: int = 0

    @property
    def subjective(self) -> int:
        """4..20."""
        return self.dynamic + self.camera + self.quality + self.accuracy


# -- the formula --


def psnr_part(psnr_db: float) -> float:
    return min(max(psnr_db, 0.0), PSNR_FULL_MARKS) / PSNR_FULL_MARKS * PSNR_WEIGHT


def ssim_part(ssim: float) -> float:
    return ssim * SSIM_WEIGHT


def subjective_part(subjective: float) -> float:
    if not 4 <= subjective <= SUBJECTIVE_MAX:
        raise ValueError(f"subjective must be the sum of four 1-5 ratings (4..20), got {subjective}")
    return subjective / SUBJECTIVE_MAX * SUBJECTIVE_WEIGHT


def weighted_total(*, subjective: float, psnr: float, ssim: float) -> float:
    """(subjective/20)*0.5 + (min(PSNR, 50)/50)*0.25 + SSIM*0.25."""
    return subjective_part(subjective) + psnr_part(psnr) + ssim_part(ssim)


# -- reading ratings --


def read_ratings(path: Path | str) -> list[Rating]:
    """Every rated row of a ratings CSV; raises RatingsError listing each bad line."""
    path = Path(path)
    if not path.is_file():
        raise RatingsError(f"ratings file {str(path)!r} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often write a BOM
        return parse_ratings(f.read(), source=path.name)


def parse_ratings(text: str, source: str = "ratings") -> list[Rating]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise RatingsError(f"{source}: empty file; the header must be {','.join(RATING_COLUMNS)}")
    columns = [h.strip().lower() for h in header]
    missing = [c for c in RATING_COLUMNS if c not in columns]
    unknown = [h for h, c in zip(header, columns) if c not in RATING_COLUMNS]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if missing or unknown or repeated:
        parts = [f"missing columns: {', '.join(missing)}" if missing else "",
                 f"unknown columns: {', '.join(map(repr, unknown))}" if unknown else "",
                 f"repeated columns: {', '.join(repeated)}" if repeated else ""]
        raise RatingsError(
            f"{source} line 1 (header): {'; '.join(p for p in parts if p)}. "
            f"Expected exactly: {','.join(RATING_COLUMNS)}"
        )
    ratings, errors, seen = [], [], {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(values) != len(columns):
            errors.append(f"line {line}: {len(values)} fields, the header has {len(columns)}")
            continue
        row = {c: v.strip() for c, v in zip(columns, values)}
        given = [f for f in RATING_FIELDS if row[f]]
        if not given:
            continue  # not rated yet (a template row)
        problems = [f"{c} is empty" for c in ("rater", "model", "entry") if not row[c]]
        if len(given) < len(RATING_FIELDS):
            empty = [f for f in RATING_FIELDS if not row[f]]
            problems.append(f"{', '.join(empty)} empty: give all four ratings or none")
        scores = {}
        for f in given:
            value = row[f]
            if value.isdigit() and 1 <= int(value) <= 5:
                scores[f] = int(value)
            else:
                problems.append(f"{f} ({RATING_MEANINGS[f]}) must be a whole number from 1 to 5, got {value!r}")
        if problems:
            errors.append(f"line {line}: " + "; ".join(problems))
            continue
        key = (row["rater"], row["model"], row["entry"])
        if key in seen:
            errors.append(
                f"line {line}: rater {key[0]!r} already rated model {key[1]!r} entry {key[2]!r} on line {seen[key]}"
            )
            continue
        seen[key] = line
        ratings.append(Rating(rater=key[0], model=key[1], entry=key[2], line=line, **scores))
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        raise RatingsError(f"{source}: {len(errors)} bad row(s):\n  " + "\n  ".join(shown) + more)
    return ratings


def ratings_template(pairs: Sequence[tuple[str, str]]) -> str:
    """A CSV with one unrated row per (model, entry), for raters to fill in."""
    lines = [",".join(RATING_COLUMNS)]
    lines += [_csv_row(["", model, entry, "", "", "", ""]) for model, entry in pairs]
    return "\n".join(lines) + "\n"


def _csv_row(values: Sequence[str]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


# -- the score table --


@dataclass(frozen=True, kw_only=True)
class EntryScore:
    """One model's score on one entry."""

    model: str
    entry: str
    psnr: float  # mean per-frame PSNR, dB
    ssim: float  # mean per-frame grey SSIM
    subjective: float | None  # mean over raters of the four ratings' sum; None: not rated
    raters: int

    @property
    def psnr_part(self) -> float:
        return psnr_part(self.psnr)

    @property
    def ssim_part(self) -> float:
        return ssim_part(self.ssim)

    @property
    def subjective_part(self) -> float | None:
        return None if self.subjective is None else subjective_part(self.subjective)

    @property
    def complete(self) -> bool:
        return self.subjective is not None

    @property
    def total(self) -> float:
        return self.psnr_part + self.ssim_part + (self.subjective_part or 0.0)

    @property
    def basis(self) -> str:
        if self.complete:
            return f"complete: metrics + ratings ({self.raters} rater{'s' if self.raters > 1 else ''})"
        return "partial: metrics only, not rated"


@dataclass(frozen=True, kw_only=True)
class ModelScore:
    """A model's score: the mean of its entries' parts."""

    model: str
    rank: int
    entries: int
    rated_entries: int
    psnr: float
    ssim: float
    subjective: float | None  # mean over its rated entries (shown even when partial, never in a partial total)
    psnr_part: float
    ssim_part: float
    subjective_part: float | None  # None unless every entry is rated
    total: float

    @property
    def complete(self) -> bool:
        return self.subjective_part is not None

    @property
    def basis(self) -> str:
        if self.complete:
            return f"complete: metrics + ratings of all {self.entries} entries"
        if self.rated_entries:
            return (
                f"partial: metrics only; ratings for {self.rated_entries} of {self.entries} entries "
                f"(missing for {self.entries - self.rated_entries})"
            )
        return f"partial: metrics only; no ratings for its {self.entries} entries"


@dataclass(frozen=True, kw_only=True)
class ScoreTable:
    models: tuple[ModelScore, ...]  # in rank order
    entries: tuple[EntryScore, ...]  # by model (in rank order), then entry
    missing: tuple[tuple[str, str], ...]  # (model, entry) pairs without any rating
    unused: tuple[Rating, ...]  # ratings of a model or entry that was not evaluated


def score_table(metrics: Mapping[tuple[str, str], tuple[float, float]], ratings: Sequence[Rating] = ()) -> ScoreTable:
    """Rank models. ``metrics[(model, entry)] = (mean PSNR dB, mean grey SSIM)`` of each evaluated video."""
    by_pair: dict[tuple[str, str], list[Rating]] = defaultdict(list)
    unused = []
    for r in ratings:
        if (r.model, r.entry) in metrics:
            by_pair[(r.model, r.entry)].append(r)
        else:
            unused.append(r)
    entry_scores: dict[str, list[EntryScore]] = defaultdict(list)
    for (model, entry), (psnr, ssim) in metrics.items():
        rs = by_pair.get((model, entry), [])
        subjective = sum(r.subjective for r in rs) / len(rs) if rs else None
        entry_scores[model].append(
            EntryScore(model=model, entry=entry, psnr=psnr, ssim=ssim, subjective=subjective, raters=len(rs))
        )
    models = [_model_score(model, scores) for model, scores in entry_scores.items()]
    # complete totals first; partial ones after, ordered among themselves; ties by name (totals equal to 1e-9: the
    # same scores summed in another order differ in the last bits)
    models.sort(key=lambda m: (not m.complete, -round(m.total, 9), m.model))
    models = [_with_rank(m, i + 1) for i, m in enumerate(models)]
    entries = tuple(e for m in models for e in sorted(entry_scores[m.model], key=lambda e: e.entry))
    missing = tuple((e.model, e.entry) for e in entries if not e.complete)
    return ScoreTable(models=tuple(models), entries=entries, missing=missing, unused=tuple(unused))


def _model_score(model: str, scores: list[EntryScore]) -> ModelScore:
    n = len(scores)
    rated = [s for s in scores if s.complete]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    subjective_part_ = mean([s.subjective_part for s in scores]) if len(rated) == n else None
    psnr_part_ = mean([s.psnr_part for s in scores])
    ssim_part_ = mean([s.ssim_part for s in scores])
    return ModelScore(
        model=model,
        rank=0,
        entries=n,
        rated_entries=len(rated),
        psnr=mean([s.psnr for s in scores]),
        ssim=mean([s.ssim for s in scores]),
        subjective=mean([s.subjective for s in rated]) if rated else None,
        psnr_part=psnr_part_,
        ssim_part=ssim_part_,
        subjective_part=subjective_part_,
        total=psnr_part_ + ssim_part_ + (subjective_part_ or 0.0),
    )


def _with_rank(m: ModelScore, rank: int) -> ModelScore:
    from dataclasses import replace

    return replace(m, rank=rank)
