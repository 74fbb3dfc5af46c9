"""Writing an evaluation's results: the leaderboard (CSV, Markdown, PNG chart) and side-by-side videos.

No Ray here: ``wanray.training.evaluate`` runs the models and calls these; ``wanray eval --rescore``
calls them again with new ratings.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wanray.metrics import PSNR_HIGH_QUALITY, SSIM_GOOD, psnr_band, ssim_band
from wanray.scoring import PSNR_FULL_MARKS, RATING_MEANINGS, ScoreTable
from wanray.video import fit, write_mp4

LEADERBOARD_CSV = "leaderboard.csv"
ENTRIES_CSV = "entries.csv"
LEADERBOARD_MD = "leaderboard.md"
LEADERBOARD_PNG = "leaderboard.png"
MODEL_COLUMNS = (
    "rank", "model", "spec", "total", "complete", "basis", "subjective_part", "psnr_part", "ssim_part",
    "subjective", "psnr", "ssim", "psnr_band", "ssim_band", "entries", "rated_entries",
)
ENTRY_COLUMNS = (
    "model", "entry", "total", "complete", "basis", "subjective_part", "psnr_part", "ssim_part", "subjective",
    "raters", "psnr_mean", "psnr_min", "ssim_mean", "ssim_min", "ssim_rgb_mean", "flicker", "flicker_reference",
)
PART_COLOURS = {"subjective": "#4c72b0", "psnr": "#dd8452", "ssim": "#55a868"}


def write_leaderboard(
    table: ScoreTable,
    out: Path,
    *,
    specs: Mapping[str, str],
    entry_metrics: Mapping[tuple[str, str], dict],
    side_by_side: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """leaderboard.csv (per model), entries.csv (per model x entry), leaderboard.md, leaderboard.png.

    ``specs[model]`` is how each model was given (``embedded+lora.safetensors:0.8``); ``entry_metrics``
    the ``VideoMetrics.to_dict()`` of each (model, entry); ``side_by_side[entry]`` a path relative to
    ``out``; ``notes`` extra lines for the Markdown (settings, conditioning that was dropped).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / LEADERBOARD_CSV,
        "entries_csv": out / ENTRIES_CSV,
        "markdown": out / LEADERBOARD_MD,
        "chart": out / LEADERBOARD_PNG,
    }
    _write_csv(paths["csv"], MODEL_COLUMNS, [_model_row(m, specs) for m in table.models])
    _write_csv(paths["entries_csv"], ENTRY_COLUMNS, [_entry_row(e, entry_metrics) for e in table.entries])
    paths["markdown"].write_text(
        markdown(table, specs=specs, entry_metrics=entry_metrics, side_by_side=side_by_side or {}, notes=notes)
    )
    plot_score_parts(table, paths["chart"])
    return paths


def _model_row(m, specs) -> dict:
    return {
        "rank": m.rank, "model": m.model, "spec": specs.get(m.model, ""), "total": _num(m.total),
        "complete": m.complete, "basis": m.basis, "subjective_part": _num(m.subjective_part),
        "psnr_part": _num(m.psnr_part), "ssim_part": _num(m.ssim_part), "subjective": _num(m.subjective),
        "psnr": _num(m.psnr), "ssim": _num(m.ssim), "psnr_band": psnr_band(m.psnr), "ssim_band": ssim_band(m.ssim),
        "entries": m.entries, "rated_entries": m.rated_entries,
    }


def _entry_row(e, entry_metrics) -> dict:
    metrics = entry_metrics[(e.model, e.entry)]
    row = {
        "model": e.model, "entry": e.entry, "total": _num(e.total), "complete": e.complete, "basis": e.basis,
        "subjective_part": _num(e.subjective_part), "psnr_part": _num(e.psnr_part), "ssim_part": _num(e.ssim_part),
        "subjective": _num(e.subjective), "raters": e.raters,
    }
    for key in ENTRY_COLUMNS[10:]:
        row[key] = _num(metrics[key])
    return row


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def markdown(
    table: ScoreTable,
    *,
    specs: Mapping[str, str],
    entry_metrics: Mapping[tuple[str, str], dict],
    side_by_side: Mapping[str, str],
    notes: Sequence[str],
) -> str:
    lines = [
        "# Leaderboard",
        "",
        f"total = (subjective/20)·0.5 + (PSNR/{PSNR_FULL_MARKS:g})·0.25 + SSIM·0.25, where subjective is the sum of "
        f"four 1–5 ratings ({', '.join(RATING_MEANINGS.values())}), averaged over raters; PSNR is the mean "
        f"per-frame PSNR (counted up to {PSNR_FULL_MARKS:g} dB), SSIM the mean grey SSIM. Bands: PSNR ≥ "
        f"{PSNR_HIGH_QUALITY:g} dB high quality, SSIM ≥ {SSIM_GOOD:g} good.",
        "",
        "A **partial** total lacks the subjective half (some entries are not rated): it holds only the PSNR and "
        "SSIM parts (at most 0.5) and ranks after every complete total.",
        "",
        "| rank | model | total | basis | subjective part | PSNR part | SSIM part | subjective | PSNR (dB) | SSIM "
        "| spec |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in table.models:
        total = f"{m.total:.4f}" if m.complete else f"{m.total:.4f} (partial)"
        lines.append(
            f"| {m.rank} | {_md(m.model)} | {total} | {_md(m.basis)} | {_fmt(m.subjective_part)} | {m.psnr_part:.4f} | "
            f"{m.ssim_part:.4f} | {_fmt(m.subjective, 2)} | {m.psnr:.2f} ({psnr_band(m.psnr)}) | "
            f"{m.ssim:.4f} ({ssim_band(m.ssim)}) | `{_md(specs.get(m.model, ''))}` |"
        )
    lines += ["", f"![score parts]({LEADERBOARD_PNG})", ""]
    if table.missing:
        lines += [f"## Missing ratings ({len(table.missing)})", ""]
        by_model: dict[str, list[str]] = {}
        for model, entry in table.missing:
            by_model.setdefault(model, []).append(entry)
        lines += [f"- {_md(model)}: {', '.join(_md(e) for e in entries)}" for model, entries in by_model.items()]
        lines += ["", "Fill them in `ratings_template.csv` and rerun with "
                      "`wanray eval --rescore DIR --ratings FILE`.", ""]
    if table.unused:
        lines += [f"## Ratings not used ({len(table.unused)}): no such model or entry in this evaluation", ""]
        lines += [f"- line {r.line}: rater {_md(r.rater)}, model {_md(r.model)}, entry {_md(r.entry)}"
                  for r in table.unused]
        lines.append("")
    lines += [
        "## Entries",
        "",
        "| entry | model | total | PSNR mean / min (dB) | SSIM mean / min | SSIM RGB | flicker (ref) | subjective "
        "| raters |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in sorted(table.entries, key=lambda e: (e.entry, e.model)):
        link = f"[{_md(e.entry)}]({side_by_side[e.entry]})" if e.entry in side_by_side else _md(e.entry)
        m = entry_metrics[(e.model, e.entry)]
        lines.append(
            f"| {link} | {_md(e.model)} | {e.total:.4f}{'' if e.complete else ' (partial)'} | "
            f"{m['psnr_mean']:.2f} / {m['psnr_min']:.2f} | {m['ssim_mean']:.4f} / {m['ssim_min']:.4f} | "
            f"{m['ssim_rgb_mean']:.4f} | {m['flicker']:.2f} ({m['flicker_reference']:.2f}) | "
            f"{_fmt(e.subjective, 2)} | {e.raters} |"
        )
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_md(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def plot_score_parts(table: ScoreTable, path: Path) -> Path:
    """Horizontal stacked bars of each model's score parts, best at the top; partial totals hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    models = list(table.models)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(models)), dpi=100)
    y = np.arange(len(models))[::-1]
    left = np.zeros(len(models))
    legend = []
    for part, label in (("subjective", "subjective ×0.5"), ("psnr", "PSNR ×0.25"), ("ssim", "SSIM ×0.25")):
        values = np.array([getattr(m, f"{part}_part") or 0.0 for m in models])
        bars = ax.barh(y, values, left=left, color=PART_COLOURS[part])
        legend.append(Patch(color=PART_COLOURS[part], label=label))
        for bar, m in zip(bars, models):
            if not m.complete:
                bar.set_hatch("//")
        left += values
    for yi, m in zip(y, models):
        ax.text(m.total + 0.01, yi, f"{m.total:.3f}" + ("" if m.complete else " partial"), va="center", fontsize=9)
    ax.set_yticks(y, [f"{m.rank}. {m.model}" for m in models])
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("score (partial totals, hatched, lack the subjective part)")
    if any(not m.complete for m in models):
        legend.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="partial total"))
    ax.legend(handles=legend, loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# -- side-by-side videos --


def side_by_side_frames(
    input_image: Image.Image,
    reference: np.ndarray,
    generated: Mapping[str, np.ndarray],
    *,
    height: int,
    width: int,
) -> np.ndarray:
    """[T, strip + height, (2 + models) * width, 3] uint8: input photo | reference | each model, labelled.

    Every panel is fitted (centre crop, resize) to height x width; the input photo is held for all
    frames. ``reference`` and each generated video are uint8 [T, H, W, 3] of the same T.
    """
    t = len(reference)
    for name, video in generated.items():
        if len(video) != t:
            raise ValueError(f"model {name!r} has {len(video)} frames but the reference has {t}")
    strip = _label_height(height)
    labels = ["input", "reference", *generated]
    header = _label_strip(labels, width, strip)  # [strip, panels * width, 3]
    photo = np.asarray(fit(input_image, width, height))
    videos = [_fit_video(reference, width, height)] + [_fit_video(v, width, height) for v in generated.values()]
    out = np.empty((t, strip + height, len(labels) * width, 3), np.uint8)
    out[:, :strip] = header
    out[:, strip:, :width] = photo
    for i, video in enumerate(videos, start=1):
        out[:, strip:, i * width : (i + 1) * width] = video
    return out


def write_side_by_side(path: Path, frames: np.ndarray, fps: float) -> Path:
    return write_mp4(frames, path, fps)


def _fit_video(video: np.ndarray, width: int, height: int) -> np.ndarray:
    if video.shape[1:3] == (height, width):
        return video
    return np.stack([np.asarray(fit(Image.fromarray(f), width, height)) for f in video])


def _label_height(height: int) -> int:
    return max(12, (height // 16) // 2 * 2)  # even: yuv420p needs even sizes


def _label_strip(labels: Sequence[str], width: int, strip: int) -> np.ndarray:
    image = Image.new("RGB", (len(labels) * width, strip), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, int(strip * 0.75)))
    for i, label in enumerate(labels):
        text = label
        while len(text) > 1 and draw.textlength(text, font=font) > width - 4:
            text = text[:-2] + "…"  # shorten long model names to fit their panel
        draw.text((i * width + 2, strip // 2), text, fill=(255, 255, 255), font=font, anchor="lm")
    return np.asarray(image)
