"""Issue 21's quality targets for the embedded model, measured on unseen synthetic entries (CPU).

    nice -n 10 .venv/bin/python bench/embedded_targets.py --label run6-2core-cpu              # the shipped model
    nice -n 10 .venv/bin/python bench/embedded_targets.py --model DIR --label run9-2core-cpu  # new weights
    .venv/bin/python bench/embedded_targets.py --quick --label smoke                          # 2 entries, 17 frames

The entries are the first ``--entries`` of ``wanray datasets synth --seed 1234`` (training used seed 0, the
evaluation report seed 7), rendered in memory: photo, prompt, anime reference clip, pose video. Each is
generated as ``wanray demo`` does: the photo, the prompt, the pose video as the VACE video, 128x128, 77
frames at 15 fps, the model's default steps and cfg, seed 0. Per entry it measures, frame by frame:

- VAE: the reference clip encoded and decoded by the model's VAE (as the pipeline calls it): PSNR, and its SSIM
  and region colours (below) as the ceilings the generated clip works under.
- Generated vs reference: PSNR and grey SSIM (``wanray.metrics.compare_videos``).
- The dancer's pixels (where the reference differs from its frames rendered without the character): PSNR of
  the VAE round trip and of the generated clip there, where most of either error sits (bench/embedded_error_map.py).
- Identity: CIEDE2000 between the mean CIELAB colour of the hair, top and bottom in the generated and the
  reference frame, both over the reference's regions (``wanray.datasets.truth``, ``wanray.metrics``).
- Motion: pixel distance of the hands and feet found by ``truth.detect_ends`` from the renderer's truth;
  a miss counts as the 16 px search radius. Scored are the hands/feet the detector reads within 3 px on
  the reference clip itself (``truth.readable_ends``); it is also run on a "frozen" clip (reference frame
  0 held for the whole clip: a figure that does not dance), the score of not following the pose at all.

It also generates ``wanray demo``'s clip (the bundled photo, scored against its rendered reference) and
skimage's astronaut photo (a real person: no reference, a strip only), times the demo clip and the
no-pose clip of ``bench/embedded_generation.py``, prints a table and writes
``bench/results/embedded_targets_LABEL.{md,json}`` and three strip PNGs (``--strips``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import table  # noqa: E402

from wanray import GenerationConfig, ModelConfig  # noqa: E402
from wanray.cli_generate import EXAMPLE_PHOTO, EXAMPLE_PROMPT  # noqa: E402
from wanray.datasets import example  # noqa: E402
from wanray.datasets.pose import Placement, render_pose_video  # noqa: E402
from wanray.datasets.render import render_anime_frames  # noqa: E402
from wanray.datasets.synth import SynthConfig, plan_entry, render_media  # noqa: E402
from wanray.datasets.truth import (  # noqa: E402
    ENDS,
    REGIONS,
    ClipTruth,
    clip_truth,
    detect_ends,
    end_errors,
    readable_ends,
)
from wanray.generation import WanGenerator  # noqa: E402
from wanray.metrics import DATA_RANGE, PSNR_CAP, compare_videos, region_delta_e  # noqa: E402
from wanray.video import fit, frames_to_array  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SIZE, FPS, SEED = 128, 15, 0  # the demo's settings (frames: 77, or 17 with --quick)
VAE_MIN_PSNR, GEN_MEAN_PSNR, GEN_MEAN_SSIM, GEN_MIN_PSNR = 30.0, 24.0, 0.90, 20.0
MAX_DELTA_E, MAX_MOTION_PX, MAX_DEMO_SECONDS = 10.0, 8.0, 30.0
STRIP_FRAMES = 6
ASTRONAUT_PROMPT = "an anime girl, bob brown hair, white jacket, white trousers, light skin, dances the wave in a studio"
STRIP_LIMIT = 300_000  # bytes: strips above it are stored with a 256-colour palette


# -- one clip --


def generate(generator: WanGenerator, photo, prompt: str, pose: list, args: argparse.Namespace):
    """uint8 [T, H, W, 3] and the seconds the generation took (model loaded; as `wanray demo`, with the sampling
    settings of ``args``: the model's defaults unless given)."""
    config = GenerationConfig(image=photo, prompt=prompt, vace_video=pose, height=SIZE, width=SIZE, frames=args.frames,
                              fps=FPS, steps=args.steps, cfg=args.cfg, sigma_shift=args.sigma_shift,
                              vace_scale=args.vace_scale, seed=SEED)
    result = generator.generate(config)
    return frames_to_array(result.frames), result.seconds, result.info


def vae_round_trip(generator: WanGenerator, frames: list[Image.Image]) -> np.ndarray:
    """The clip encoded and decoded whole by the pipeline's VAE, with the pipeline's own conversions."""
    import torch

    pipe = generator.pipe
    with torch.no_grad():
        latents = pipe.vae.encode(pipe.preprocess_video(frames), device=pipe.device, tiled=False)
        decoded = pipe.vae.decode(latents, device=pipe.device, tiled=False)
    return frames_to_array(pipe.vae_output_to_video(decoded))


def dancer_pixels(reference: np.ndarray, truth: ClipTruth) -> np.ndarray:
    """[T, H, W] bool: where the reference differs from its frames rendered without the character."""
    return (reference != truth.background).any(-1)


def squared_error(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[T, H, W] squared error per pixel (mean over RGB) of uint8 [T, H, W, 3] clips."""
    return ((output.astype(np.float32) - reference.astype(np.float32)) ** 2).mean(-1)


def pooled_psnr(se_sum: float, pixels: int) -> float:
    """PSNR of the mean squared error over ``pixels``, capped as ``wanray.metrics.psnr_per_frame`` caps it."""
    if not pixels:
        return float("nan")
    mse = se_sum / pixels
    return float(min(10 * np.log10(DATA_RANGE**2 / mse), PSNR_CAP)) if mse > 0 else PSNR_CAP


def masked_psnr(output: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the masked pixels of uint8 [T, H, W, 3] clips, pooled over frames."""
    return pooled_psnr(float(squared_error(output, reference)[mask].sum()), int(mask.sum()))


def score(generated: np.ndarray, reference: np.ndarray, truth: ClipTruth) -> dict:
    """Every per-frame number of one generated clip against its reference and the renderer's truth."""
    metrics = compare_videos(generated, reference)
    delta_e = region_delta_e(generated, reference, truth.masks)
    # only hands/feet the detector reads right on the reference itself are scored (truth.readable_ends)
    readable = readable_ends(reference, truth)
    clips = {"generated": generated, "calibration": reference, "frozen": np.repeat(reference[:1], len(reference), 0)}
    found = {name: detect_ends(clip, truth) for name, clip in clips.items()}
    motion = {name: end_errors(f, truth) for name, f in found.items()}
    for name in ("generated", "frozen"):
        motion[name] = np.where(readable, motion[name], np.nan)
    return {
        "psnr": metrics.psnr, "ssim": metrics.ssim, "delta_e": delta_e, "motion": motion,
        "dancer_psnr": masked_psnr(generated, reference, dancer_pixels(reference, truth)),
        "missed": int((np.isnan(found["generated"][..., 0]) & readable).sum()),
        "calibration_missed": int((np.isnan(found["calibration"][..., 0]) & truth.visible).sum()),
        "visible_ends": int(truth.visible.sum()), "scored_ends": int(readable.sum()),
    }


def summary(s: dict, vae_psnr: np.ndarray | None) -> dict:
    """One entry's row: means, minima and maxima of its per-frame numbers."""
    row = {
        "psnr_mean": float(s["psnr"].mean()), "psnr_min": float(s["psnr"].min()), "ssim_mean": float(s["ssim"].mean()),
        "dancer_psnr": s["dancer_psnr"],
        **{f"delta_e_{r}_mean": _nan(np.nanmean, s["delta_e"][r]) for r in REGIONS},
        **{f"delta_e_{r}_max": _nan(np.nanmax, s["delta_e"][r]) for r in REGIONS},
        "motion_px": _nan(np.nanmean, s["motion"]["generated"]),
        "hands_px": _nan(np.nanmean, s["motion"]["generated"][:, :2]),
        "feet_px": _nan(np.nanmean, s["motion"]["generated"][:, 2:]),
        "within_8px": _share_within(s["motion"]["generated"], MAX_MOTION_PX),
        "calibration_px": _nan(np.nanmean, s["motion"]["calibration"]),
        "frozen_px": _nan(np.nanmean, s["motion"]["frozen"]),
        "missed": s["missed"], "calibration_missed": s["calibration_missed"],
        "visible_ends": s["visible_ends"], "scored_ends": s["scored_ends"],
    }
    row["delta_e_max"] = _nan(np.nanmax, [row[f"delta_e_{r}_max"] for r in REGIONS])
    if vae_psnr is not None:
        row["vae_psnr_min"], row["vae_psnr_mean"] = float(vae_psnr.min()), float(vae_psnr.mean())
    return row


def _nan(fn, values) -> float:
    values = np.asarray(values, dtype=float)
    return float(fn(values)) if np.isfinite(values).any() else float("nan")


def _share_within(errors: np.ndarray, px: float) -> float:
    scored = errors[np.isfinite(errors)]
    return float(np.mean(scored <= px)) if scored.size else float("nan")


def per_frame(s: dict, vae_psnr: np.ndarray | None) -> dict:
    """The per-frame lists for the JSON (rounded: they are for plots and spot checks)."""
    r = lambda a: [None if not np.isfinite(v) else round(float(v), 3) for v in np.ravel(a)]  # noqa: E731
    out = {"psnr": r(s["psnr"]), "ssim": r(s["ssim"]), "delta_e": {k: r(v) for k, v in s["delta_e"].items()},
           "motion_px": {k: [r(row) for row in v] for k, v in s["motion"].items()}, "ends": list(ENDS)}
    if vae_psnr is not None:
        out["vae_psnr"] = r(vae_psnr)
    return out


# -- the runs --


def run_entries(generator: WanGenerator, args: argparse.Namespace) -> list[dict]:
    config = SynthConfig(n=args.entries, out=Path("unused"), seed=args.seed, frames=args.frames, fps=FPS)
    entries = []
    for i in range(args.entries):
        plan = plan_entry(config, i)
        media = render_media(plan, args.frames, FPS)
        reference = frames_to_array(media.video)
        truth = clip_truth(plan.character, plan.dance, plan.placement, plan.layout, args.frames, FPS)
        round_trip = vae_round_trip(generator, media.video)
        # what the VAE alone loses, a ceiling for the generated clip's numbers
        vae_metrics = compare_videos(round_trip, reference)
        vae_psnr, vae_ssim = vae_metrics.psnr, vae_metrics.ssim  # each [T]
        vae_delta_e = region_delta_e(round_trip, reference, truth.masks)
        generated, seconds, info = generate(generator, media.photo, plan.prompt, media.pose, args)
        s = score(generated, reference, truth)
        row = {"id": plan.id, "dance": plan.dance, "scene": plan.scene, **summary(s, vae_psnr), "seconds": seconds,
               "vae_dancer_psnr": masked_psnr(round_trip, reference, dancer_pixels(reference, truth)),
               "vae_ssim_mean": float(vae_ssim.mean()),
               **{f"vae_delta_e_{r}_mean": _nan(np.nanmean, vae_delta_e[r]) for r in REGIONS},
               **{f"vae_delta_e_{r}_max": _nan(np.nanmax, vae_delta_e[r]) for r in REGIONS}}
        entries.append({"row": row, "prompt": plan.prompt, "frames": per_frame(s, vae_psnr), "info": info,
                        "strip": (media.photo, generated, reference)})
        print(f"[{i + 1}/{args.entries}] {plan.id} {plan.dance:6s} VAE min {row['vae_psnr_min']:.1f} dB, "
              f"PSNR {row['psnr_mean']:.2f} dB, SSIM {row['ssim_mean']:.3f}, Delta-E max {row['delta_e_max']:.1f}, "
              f"motion {row['motion_px']:.1f} px (frozen {row['frozen_px']:.1f}), {seconds:.1f} s", flush=True)
    return entries


def run_demo(generator: WanGenerator, args: argparse.Namespace) -> dict:
    """`wanray demo`'s clip, scored against the example character's rendered anime clip."""
    pose = render_pose_video(example.EXAMPLE_DANCE, SIZE, SIZE, args.frames, FPS)
    photo = Image.open(EXAMPLE_PHOTO).convert("RGB")
    generated, seconds, info = generate(generator, photo, EXAMPLE_PROMPT, pose, args)
    character, layout, placement = example.example_character(), example.example_layout(), Placement(height=SIZE, width=SIZE)
    reference = frames_to_array(render_anime_frames(character, example.EXAMPLE_DANCE, placement, layout, args.frames, FPS))
    truth = clip_truth(character, example.EXAMPLE_DANCE, placement, layout, args.frames, FPS)
    s = score(generated, reference, truth)
    row = {"id": "demo", "dance": example.EXAMPLE_DANCE, "scene": example.EXAMPLE_SCENE, **summary(s, None),
           "seconds": seconds}
    return {"row": row, "prompt": EXAMPLE_PROMPT, "frames": per_frame(s, None), "info": info,
            "strip": (photo, generated, reference)}


def run_astronaut(generator: WanGenerator, args: argparse.Namespace) -> dict:
    """A real photo (scikit-image's astronaut, Eileen Collins): no reference, so a strip and no numbers."""
    from skimage import data

    photo = fit(Image.fromarray(data.astronaut()), SIZE, SIZE)
    pose = render_pose_video("wave", SIZE, SIZE, args.frames, FPS)
    generated, seconds, info = generate(generator, photo, ASTRONAUT_PROMPT, pose, args)
    return {"prompt": ASTRONAUT_PROMPT, "seconds": seconds, "strip": (photo, generated, frames_to_array(pose))}


def time_no_pose(generator: WanGenerator, args: argparse.Namespace) -> float:
    """bench/embedded_generation.py's clip (bundled photo and prompt, no pose video), as it times it."""
    config = GenerationConfig(image=EXAMPLE_PHOTO, prompt=EXAMPLE_PROMPT, frames=args.frames, steps=args.steps)
    started = time.perf_counter()
    generator.generate(config)
    return time.perf_counter() - started


# -- targets --


def targets(entries: list[dict], demo: dict, speed: dict) -> list[dict]:
    """One row per target: measured, threshold, met, margin (+ met by, - short by)."""
    rows = [e["row"] for e in entries]
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    worst = lambda key, fn: fn(r[key] for r in rows)  # noqa: E731
    n = len(rows)
    # the mean's standard error over entries: how far another draw of entries could move it (0 for a single entry)
    se = lambda key: float(np.std([r[key] for r in rows], ddof=1) / np.sqrt(n)) if n > 1 else 0.0  # noqa: E731

    def at_least(name, measured, threshold, unit, note):
        return {"target": name, "measured": measured, "threshold": f">= {threshold:g}{unit}",
                "met": measured >= threshold, "margin": measured - threshold, "unit": unit, "note": note}

    def at_most(name, measured, threshold, unit, note):
        return {"target": name, "measured": measured, "threshold": f"<= {threshold:g}{unit}",
                "met": measured <= threshold, "margin": threshold - measured, "unit": unit, "note": note}

    out = [
        at_least("VAE round trip, every frame PSNR", worst("vae_psnr_min", min), VAE_MIN_PSNR, " dB",
                 f"worst frame of {n} entries; mean frame {mean('vae_psnr_mean'):.2f} dB; the dancer's pixels "
                 f"{mean('vae_dancer_psnr'):.2f} dB (mean over entries); "
                 f"{sum(r['vae_psnr_min'] >= VAE_MIN_PSNR for r in rows)}/{n} entries meet it"),
        at_least("generated mean PSNR", worst("psnr_mean", min), GEN_MEAN_PSNR, " dB",
                 f"worst entry; mean over entries {mean('psnr_mean'):.2f} ± {se('psnr_mean'):.2f} dB (s.e.); the dancer's pixels "
                 f"{mean('dancer_psnr'):.2f} dB; "
                 f"{sum(r['psnr_mean'] >= GEN_MEAN_PSNR for r in rows)}/{n} entries meet it"),
        at_least("generated mean SSIM", worst("ssim_mean", min), GEN_MEAN_SSIM, "",
                 f"worst entry; mean over entries {mean('ssim_mean'):.3f} ± {se('ssim_mean'):.3f} (s.e.); "
                 f"{sum(r['ssim_mean'] >= GEN_MEAN_SSIM for r in rows)}/{n} entries meet it; the VAE round trip "
                 f"alone: mean {mean('vae_ssim_mean'):.3f}, worst entry {worst('vae_ssim_mean', min):.3f}"),
        at_least("generated, no frame below", worst("psnr_min", min), GEN_MIN_PSNR, " dB",
                 f"worst frame; {sum(r['psnr_min'] >= GEN_MIN_PSNR for r in rows)}/{n} entries meet it"),
        at_most("identity: hair/top/bottom Delta-E (CIEDE2000), whole clip", worst("delta_e_max", max), MAX_DELTA_E,
                "", "worst frame and region; max per region: "
                + ", ".join(f"{r} {max(e[f'delta_e_{r}_max'] for e in rows):.1f}" for r in REGIONS)
                + "; clip means: " + ", ".join(f"{r} {mean(f'delta_e_{r}_mean'):.1f}" for r in REGIONS)
                + f"; {sum(r['delta_e_max'] <= MAX_DELTA_E for r in rows)}/{n} entries meet it"
                + "; the VAE round trip alone: max per region "
                + ", ".join(f"{r} {max(e[f'vae_delta_e_{r}_max'] for e in rows):.1f}" for r in REGIONS)
                + ", clip means " + ", ".join(f"{r} {mean(f'vae_delta_e_{r}_mean'):.1f}" for r in REGIONS)),
        at_most("motion: hands and feet, mean error", _pooled(entries, "generated"), MAX_MOTION_PX, " px",
                f"all scored hand/foot frames; hands {_pooled(entries, 'generated', 'hands'):.1f}, feet "
                f"{_pooled(entries, 'generated', 'feet'):.1f} px; detector on the reference "
                f"{_pooled(entries, 'calibration'):.2f} px, on a frozen clip {_pooled(entries, 'frozen'):.1f} px; "
                f"{sum(r['motion_px'] <= MAX_MOTION_PX for r in rows)}/{n} entries meet it"),
    ]
    if speed:
        out.append(at_most("demo clip (with the wave's pose video)", speed["demo_s"], MAX_DEMO_SECONDS, " s",
                           f"no-pose clip of bench/embedded_generation.py: {speed['no_pose_s']:.1f} s; "
                           f"load average {speed['load_before']:.1f} before, {speed['load_after']:.1f} after"))
    return out


def _pooled(entries: list[dict], clip: str, which: str = "all") -> float:
    """Mean end error over every scored hand/foot frame of every entry."""
    cols = {"all": slice(0, 4), "hands": slice(0, 2), "feet": slice(2, 4)}[which]
    errors = [np.asarray(e["frames"]["motion_px"][clip], dtype=float)[:, cols] for e in entries]
    return float(np.nanmean(np.concatenate([x.ravel() for x in errors])))


# -- strips --


def strip(blocks: list[tuple[str, Image.Image, np.ndarray, np.ndarray, str]], path: Path) -> Path:
    """Per block: a caption; photo | six generated frames; then `second` label | six frames of the second clip."""
    cell, pad, caption = SIZE, 2, 14
    font = ImageFont.load_default(size=11)
    width = (1 + STRIP_FRAMES) * (cell + pad)
    block_h = caption + 2 * (cell + pad)
    canvas = Image.new("RGB", (width, len(blocks) * block_h), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    for b, (title, photo, generated, second, second_label) in enumerate(blocks):
        top = b * block_h
        picks = np.linspace(0, len(generated) - 1, STRIP_FRAMES).round().astype(int)
        draw.text((2, top + 1), f"{title} | photo, generated frames {', '.join(map(str, picks))}",
                  fill=(235, 235, 235), font=font)
        y1, y2 = top + caption, top + caption + cell + pad
        canvas.paste(fit(photo, cell, cell), (0, y1))
        draw.text((4, y2 + cell // 2 - 6), second_label, fill=(235, 235, 235), font=font)
        for k, t in enumerate(picks):
            x = (1 + k) * (cell + pad)
            canvas.paste(Image.fromarray(generated[t]), (x, y1))
            canvas.paste(Image.fromarray(second[t]), (x, y2))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    if path.stat().st_size > STRIP_LIMIT:  # photos' sensor noise compresses badly; a palette keeps it small
        canvas.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def unseen_for_strip(entries: list[dict], count: int = 3) -> list[dict]:
    """The first entries of distinct dances (more to see than three of the same dance)."""
    chosen, dances = [], set()
    for e in entries:
        if e["row"]["dance"] not in dances:
            chosen.append(e)
            dances.add(e["row"]["dance"])
    return (chosen + [e for e in entries if e not in chosen])[:count]


def write_strips(entries, demo, astronaut, directory: Path, label: str) -> dict[str, Path]:
    def block(e, second_label="reference"):
        r = e["row"]
        photo, generated, second = e["strip"]
        title = f"{r['id']}: {r['dance']}, {r['scene']}  PSNR {r['psnr_mean']:.1f} dB  SSIM {r['ssim_mean']:.2f}"
        return (title, photo, generated, second, second_label)

    photo, generated, pose = astronaut["strip"]
    return {
        "demo": strip([block(demo)], directory / f"embedded_targets_{label}_demo.png"),
        "unseen": strip([block(e) for e in unseen_for_strip(entries)], directory / f"embedded_targets_{label}_unseen.png"),
        "astronaut": strip([("astronaut (scikit-image): wave, no reference", photo, generated, pose, "pose")],
                           directory / f"embedded_targets_{label}_astronaut.png"),
    }


# -- report --

ENTRY_COLUMNS = ["id", "dance", "scene", "vae_psnr_min", "vae_dancer_psnr", "psnr_mean", "psnr_min", "dancer_psnr",
                 "ssim_mean", "delta_e_hair_max", "delta_e_top_max", "delta_e_bottom_max", "motion_px", "frozen_px",
                 "calibration_px", "missed", "scored_ends", "seconds"]


def fmt(row: dict, columns: list[str]) -> dict:
    out = {}
    for c in columns:
        v = row.get(c, "")
        out[c] = (f"{v:.3f}" if c.startswith("ssim") else f"{v:.2f}" if c.endswith("_px") else f"{v:.1f}") \
            if isinstance(v, float) else v
    return out


def target_rows(rows: list[dict]) -> list[dict]:
    return [{"target": r["target"], "measured": f"{r['measured']:.3g}{r['unit']}", "threshold": r["threshold"],
             "met": "yes" if r["met"] else "no", "margin": f"{r['margin']:+.3g}{r['unit']}"} for r in rows]


def markdown(args, generator, entries, demo, astronaut, goals, strips, speed, started: float) -> str:
    info = entries[0]["info"]
    scored, visible = (sum(e["row"][k] for e in entries) for k in ("scored_ends", "visible_ends"))
    lines = [
        f"# Issue 21 targets: embedded model, `{args.label}`",
        "",
        f"`{shlex.join(sys.argv)}` on {os.cpu_count()} CPU cores ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"{(time.perf_counter() - started) / 60:.0f} min). Model `{args.model}` ({generator.spec.name}, files "
        f"`{model_digest(args.model)}`: `wanray.datasets.cache.model_identity`).",
        *([f"- {args.note}"] if args.note else []),
        f"- Entries: the first {len(entries)} of `wanray datasets synth --seed {args.seed}` (training: seed 0; the "
        f"evaluation report: seed 7), rendered in memory; the dances are the same seven procedural ones.",
        f"- Generation: {info['width']}x{info['height']}, {info['frames']} frames at {FPS} fps, {info['steps']} steps, "
        f"cfg {info['cfg']}, sigma shift {args.sigma_shift or generator.spec.default_sigma_shift}, VACE scale "
        f"{args.vace_scale}, seed {SEED}, the entry's pose video as the VACE video (as `wanray demo`).",
        "- Identity: CIEDE2000 between region means in CIELAB, over the reference frame's regions (outlines "
        "excluded). Motion: `wanray.datasets.truth.detect_ends` (its docstring says what it is told), a miss "
        "counts as 16 px (the search radius); scored are the hands/feet at least half visible that the detector "
        f"finds within 3 px on the reference itself ({scored} of {visible} hand/foot frames).",
        "",
        "## Targets",
        "",
        md_table(target_rows(goals), ["target", "measured", "threshold", "met", "margin"]),
        "",
        "Each target's detail: " + "; ".join(f"**{g['target']}**: {g['note']}" for g in goals) + ".",
        "",
        "## Entries",
        "",
        md_table([fmt(e["row"], ENTRY_COLUMNS) for e in entries + [demo]], ENTRY_COLUMNS),
        "",
        "`demo` is `wanray demo`'s clip, scored against the example character's rendered anime clip; it is not in "
        "the targets' summary. `frozen_px`: the generated clip replaced by reference frame 0 held still (a figure "
        "that does not dance: what not following the pose scores); `calibration_px`: the detector on the reference "
        "clip, every visible hand/foot (misses as 16 px); `missed`: scored hands/feet not found in the generated "
        "clip. `vae_dancer_psnr`, `dancer_psnr`: PSNR over the pixels where the reference differs from its "
        "frames rendered without the character (the dancer), VAE round trip and generated clip.",
        "",
        "## Strips",
        "",
        *[f"- `{p.name}` ({p.stat().st_size // 1000} KB)" for p in strips.values()],
        f"- Astronaut prompt: \"{astronaut['prompt']}\", the wave.",
    ]
    if not speed:
        lines += ["", "Speed was not measured (`--quick`)."]
    return "\n".join(lines) + "\n"


def model_digest(model: str) -> str:
    """12 hex digits naming the model's files (sizes and end samples), to tell runs on other weights apart."""
    import hashlib

    from wanray.datasets.cache import model_identity

    return hashlib.sha256(json.dumps(model_identity(model), sort_keys=True).encode()).hexdigest()[:12]


def md_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n"
    return head + "\n".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded", help="'embedded' (the shipped weights) or a model directory")
    p.add_argument("--entries", type=int, default=16, help="unseen synthetic entries (default 16)")
    p.add_argument("--seed", type=int, default=1234, help="synthetic seed of the entries (default 1234; training used 0)")
    p.add_argument("--label", required=True, help="names the result files, e.g. run6-2core-cpu")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--sigma-shift", type=float, default=None, help="the scheduler's shift (default: the model's)")
    p.add_argument("--vace-scale", type=float, default=1.0, help="weight of the pose video's VACE hints (default 1)")
    p.add_argument("--frames", type=int, default=77, help="frames per clip, 4n+1 (default 77: 5.1 s at 15 fps)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 entries, 17 frames, no timing")
    p.add_argument("--strips", type=Path, default=RESULTS, help="folder for the strip PNGs (default bench/results)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the .md and .json (default bench/results)")
    p.add_argument("--note", default="", help="a line for the report, e.g. where the weights came from")
    args = p.parse_args()
    if args.seed == 0:
        p.error("seed 0 is the training set's: pick another (default 1234)")
    if args.quick:
        args.entries, args.frames = min(args.entries, 2), 17
    started = time.perf_counter()
    generator = WanGenerator.load(ModelConfig(model=args.model, device="cpu"))
    speed = {}
    if not args.quick:  # first, before the long run heats the box up or other work piles on
        load_before = os.getloadavg()[0]
        demo = run_demo(generator, args)
        speed = {"demo_s": demo["row"]["seconds"], "no_pose_s": time_no_pose(generator, args),
                 "load_before": load_before, "load_after": os.getloadavg()[0]}
    else:
        demo = run_demo(generator, args)
    entries = run_entries(generator, args)
    astronaut = run_astronaut(generator, args)
    goals = targets(entries, demo, speed)
    strips = write_strips(entries, demo, astronaut, args.strips, args.label)

    print(f"\nembedded targets, {args.label}: {len(entries)} entries (seed {args.seed}), {args.frames} frames")
    print(table([fmt(e["row"], ENTRY_COLUMNS) for e in entries + [demo]], ENTRY_COLUMNS))
    print()
    print(table(target_rows(goals), ["target", "measured", "threshold", "met", "margin"]))
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / f"embedded_targets_{args.label}.md"
    md.write_text(markdown(args, generator, entries, demo, astronaut, goals, strips, speed, started))
    record = {
        "command": sys.argv, "note": args.note, "model": args.model, "model_files": model_digest(args.model), "seed": args.seed, "frames": args.frames, "targets": goals,
        "speed": speed, "info": entries[0]["info"], "strips": {k: str(v) for k, v in strips.items()},
        "entries": [{**e["row"], "prompt": e["prompt"], "per_frame": e["frames"]} for e in entries],
        "demo": {**demo["row"], "prompt": demo["prompt"], "per_frame": demo["frames"]},
        "astronaut": {"prompt": astronaut["prompt"], "seconds": astronaut["seconds"]},
    }
    (args.out / f"embedded_targets_{args.label}.json").write_text(json.dumps(_plain(record), separators=(",", ":")) + "\n")
    print(f"\nwrote {md}, its .json and {', '.join(str(p) for p in strips.values())}")


def _plain(value):
    """JSON-ready: numpy scalars to Python, NaN to null (JSON has no NaN), paths to strings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


if __name__ == "__main__":
    main()
