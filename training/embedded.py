"""Train the embedded miniature Wan on the synthetic set: its VAE, its DiT (I2V + VACE), then the VAE's decoder.

    wanray datasets synth --n 800 --out data/synth --height 128 --width 128 --frames 77
    python -m wanray.training.embedded --stage vae --data data/synth --out outputs/embedded --device cuda --steps 20000
    python -m wanray.training.embedded --stage dit --data data/synth --out outputs/embedded --device cuda --steps 20000
    python -m wanray.training.embedded --stage vae-decoder --data data/synth --out outputs/embedded --device cuda
    # -> outputs/embedded/model: a model directory like wanray/embedded_model/ (wanray generate --model DIR)

``scripts/train-embedded.sh`` runs all of them with time budgets. Every stage prints progress, checkpoints every
``--save-every`` steps and resumes from its last checkpoint when rerun with the same ``--out``; ``--device cpu``
runs the same code, slowly. Every stage can render its set in memory instead (``--entries N --data-seed S``; the
dit stage then runs without Ray: ``wanray.training.embedded_dit``) and write a ``--checkpoint-precision portable``
checkpoint small enough to carry between machines: ``scripts/gpu-host-train-embedded.sh`` trains on a GPU host in
independent calls that way.

- vae: the spec's ``VideoVAE_`` (8x spatial, 4x temporal) trained from scratch on random 13-frame clips (four
  latent frames, so the causal cache is trained past the first chunk): L1 reconstruction in pixel space plus a
  small penalty 0.5 * z^2 that keeps the (Wan-normalised) latents near unit scale, which is what the DiT
  expects. Writes ``<out>/model_vae``: the bundled embedded model with this VAE.
- dit: encodes the train split once with the trained VAE and the frozen encoders (``<out>/latents``, a
  ``wanray datasets cache``), then a full fine-tune of the DiT and its VACE branch with the Ray Train loop
  (preset ``embedded_full``) on ``<out>/model_vae`` from those latents. Exports ``<out>/model``.
- vae-decoder: fine-tunes only the decoder on 77-frame clips (the causal decoder drifts past the clip length
  it was trained on); the encoder, hence the DiT's latents, stays as it is. Rewrites the VAE of both folders.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)


def _decode(path: Path, size: int) -> np.ndarray:
    from wanray.datasets.media import read_frames
    from wanray.video import fit

    frames, _ = read_frames(path)
    return np.stack([np.asarray(fit(Image.fromarray(f), size, size)) for f in frames])  # [T, H, W, 3] uint8


def _render(seed: int, index: int, size: int, frames: int) -> np.ndarray:
    """Entry ``index`` of ``wanray datasets synth --seed SEED``'s set: its anime target video, rendered in memory."""
    from wanray.datasets.render import render_anime_frames
    from wanray.datasets.synth import SynthConfig, plan_entry

    plan = plan_entry(SynthConfig(n=index + 1, out=Path("."), seed=seed, height=size, width=size, frames=frames),
                      index)
    video = render_anime_frames(plan.character, plan.dance, plan.placement, plan.layout, frames, 15.0)
    return np.stack([np.asarray(f) for f in video])  # [T, H, W, 3] uint8


def _target_videos(data: Path | None, entries: int, data_seed: int, size: int, frames: int,
                   keep: Path | None = None) -> list[np.ndarray] | np.ndarray:
    """The target videos, each decoded (``data``: a synth folder) or rendered (``entries`` from ``data_seed``) once,
    up front, by a process pool: a 128x128x77 clip is 3.8 MB, 1,200 of them fit in memory, and the GPU is not left
    waiting on ffmpeg or the renderer. Rendering needs no files, codecs or Ray: what a bare GPU host can do at once.
    ``keep``: a folder where a rendered set is kept as one array, so the next run on this machine maps it instead."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    kept = keep / f"rendered-seed{data_seed}-n{entries}-{size}px-{frames}f.npy" if keep and data is None else None
    if kept is not None and kept.is_file():
        print(f"vae: {entries} rendered videos from {kept}", flush=True)
        return np.load(kept, mmap_mode="r")  # [N, T, H, W, 3] uint8
    started = time.perf_counter()
    # forkserver, not fork: the caller may hold Ray's and torch's threads, and a forked copy of a threaded process
    # can die at once (a BrokenProcessPool in the test suite, after the DiT stage's Ray Train run)
    forkserver = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1), mp_context=forkserver) as pool:
        if data is not None:
            from wanray.datasets.schema import read_manifest, resolve_media

            paths = [resolve_media(data, row.video, "video") for row in read_manifest(data)]
            videos = list(pool.map(_decode, paths, [size] * len(paths), chunksize=8))
        else:
            n = range(entries)
            videos = list(pool.map(_render, [data_seed] * entries, n, [size] * entries, [frames] * entries,
                                   chunksize=4))
    how = f"decoded from {data}" if data is not None else f"rendered (seed {data_seed}, {frames} frames)"
    print(f"vae: {len(videos)} videos {how} in {time.perf_counter() - started:.1f} s", flush=True)
    if kept is not None:
        partial = kept.with_suffix(".partial.npy")
        np.save(partial, np.stack(videos))
        partial.replace(kept)
    return videos


def _moving_pixels(video: np.ndarray, threshold: int = 16) -> np.ndarray:
    """[(y, x)] of the pixels that change over the clip (the dancer; the scene is static): [N, 2] int."""
    change = np.abs(video.astype(np.int16) - video[:1]).max(axis=(0, 3))  # [H, W]
    return np.argwhere(change > threshold)


class ClipSampler:
    """Batches [batch, 3, frames, crop, crop] in [-1, 1]: random windows and crops of the target videos.

    A batch is a function of (seed, step) alone, so a run resumed at step N draws exactly what the uninterrupted
    run drew from step N on (the data position is the step). The VAE is convolutional, so small crops teach it the
    same local code as whole frames at a fraction of the cost per step; ``crop=0`` keeps whole frames.
    ``focus``: the share of crops centred on a moving pixel. The dancer covers ~10% of a frame and is all the
    VAE finds hard (thin limbs, four poses per latent frame); uniform crops spend most steps on static scenery.
    """

    def __init__(self, videos: list[np.ndarray] | np.ndarray, *, frames: int, seed: int, batch: int = 1, crop: int = 0,
                 focus: float = 0.0):
        self.videos, self.frames, self.seed, self.batch, self.crop, self.focus = videos, frames, seed, batch, crop, focus
        self.moving = [_moving_pixels(v) for v in videos] if crop and focus else []

    def batch_at(self, step: int) -> torch.Tensor:
        rng = random.Random(self.seed * 1_000_003 + step)
        return torch.stack([self._clip(rng) for _ in range(self.batch)]).permute(0, 4, 1, 2, 3)  # [B, 3, T, H, W]

    def _clip(self, rng: random.Random) -> torch.Tensor:
        n = rng.randrange(len(self.videos))
        video = self.videos[n]
        size = video.shape[1]
        start = rng.randrange(0, max(1, len(video) - self.frames + 1))
        clip = video[start : start + self.frames]  # [T, H, W, 3]
        if self.crop:
            crop = self.crop
            top, left = rng.randrange(0, size - crop + 1), rng.randrange(0, size - crop + 1)
            if self.moving and len(self.moving[n]) and rng.random() < self.focus:
                y, x = self.moving[n][rng.randrange(len(self.moving[n]))]
                top, left = (min(max(int(c) - crop // 2, 0), size - crop) for c in (y, x))
            clip = clip[:, top : top + crop, left : left + crop]
        return torch.from_numpy(np.ascontiguousarray(clip)).float() / 127.5 - 1


def train_vae(data_dir: Path | None, out: Path, device: torch.device, steps: int, lr: float, size: int,
              save_every: int, seed: int, batch: int = 8, crop: int = 32, max_seconds: float | None = None,
              clip_frames: int = 13, decoder_only: bool = False, vae_dim: int | None = None, focus: float = 0.0,
              checkpoint_only: bool = False, vae_from: Path | None = None, cosine: bool = False,
              entries: int = 0, data_seed: int = 0, precision: str = "exact", warmup: int = 0,
              loss_kind: str = "l1", decoder_dim_mult: tuple[int, ...] | None = None,
              fresh_moments: bool = False) -> Path | None:
    """Train the VAE from scratch (or on from ``vae_from``, a model folder), or (``decoder_only``) fine-tune the
    decoder of ``<out>``'s trained VAE (or of ``vae_from``).

    The decoder-only stage keeps the encoder, hence the latent space a trained DiT learned, exactly as it is.
    It exists because a causal decoder trained on short clips drifts past that length: with 13-frame clips
    the reconstruction error of a 77-frame clip grew from 0.03 to 0.14-0.37 L1 over its last frames (0.06-0.12 after
    this stage: `bench/embedded_vae_drift.py`).
    Data: ``data_dir`` (a synth folder), or with ``data_dir=None`` ``entries`` rendered in memory from ``data_seed``.
    ``vae_dim``: the VAE's base width for a new VAE (default: the bundled model's); with ``vae_from``, a larger width
    widens that VAE first, starting from its function (``wanray.training.vae_widen.widen_vae``).
    ``checkpoint_only``: train and checkpoint, but write no model folder (the decoder stage beside a running DiT
    stage, whose model folder and latent cache must not change under it); rerun without it (``--max-seconds 0``) to
    write the VAE.
    ``cosine``: the learning rate decays from ``lr`` to 0 over ``steps`` (a function of the step, so a resumed run
    continues the same curve); otherwise it stays at ``lr``. ``warmup``: steps of linear warm-up first (the Ray
    Train loop's schedule, ``engine.lr_lambda``): a fresh Adam at the full rate moves every weight of a trained VAE
    by about the rate at once (run 11's first steps undid part of run 9's training). ``precision``: the checkpoint's
    (``wanray.training.checkpoint``): ``portable`` to carry it between machines, ``exact`` to resume bit for bit.
    ``loss_kind``: ``l1`` (the mean absolute error) or ``mse`` (the mean squared error, what PSNR measures: it weighs
    the few large errors on thin limbs and faces more than l1, which settles for their median).
    ``decoder_dim_mult`` (decoder-only): widen the decoder to these widths first, starting from the old decoder's
    function (``wanray.training.vae_widen``); the encoder and its latents stay as they are.
    A checkpoint in ``<out>/<stage>_stage/checkpoint`` holds the whole VAE and its architecture (``vae_arch.json``),
    so a run resumes from it alone. ``fresh_moments``: resume one saved without Adam's moments (a GPU host's call
    returns the whole VAE's weights without them) with new moments, on the same schedule and data order.
    """
    from dataclasses import replace

    from wanray.accel import speed_up_cpu_conv3d
    from wanray.components import build_vae
    from wanray.generation import resolve_model
    from wanray.loading import load_vae
    from wanray.specs import VAEArch, spec_for_dir
    from wanray.training.checkpoint import OPTIMIZER, load_checkpoint, replace_atomically, save_checkpoint
    from wanray.training.config import OptimSettings
    from wanray.training.engine import lr_lambda
    from wanray.training.state import TrainerState

    if loss_kind not in ("l1", "mse"):
        raise ValueError(f"loss_kind {loss_kind!r}: use 'l1' or 'mse'")
    torch.manual_seed(seed)
    stage = "vae_decoder" if decoder_only else "vae"
    ckpt_dir = out / f"{stage}_stage" / "checkpoint"
    resuming = (ckpt_dir / "trainer_state.json").is_file()
    if decoder_dim_mult is not None and not decoder_only:
        raise ValueError("decoder_dim_mult widens the decoder of the vae-decoder stage; the vae stage trains the "
                         "encoder's widths")
    if decoder_only:
        source = vae_from or _latest_model_dir(out)
        spec = spec_for_dir(source)
        arch = vae_arch_of(ckpt_dir, spec.vae) if resuming else spec.vae
        if decoder_dim_mult is not None and tuple(decoder_dim_mult) != arch.decoder_mult:
            if resuming:
                raise ValueError(f"{ckpt_dir} holds a decoder of widths {arch.decoder_mult}, not "
                                 f"{tuple(decoder_dim_mult)}: leave --decoder-dim-mult out to resume it")
            arch = replace(arch, decoder_dim_mult=tuple(decoder_dim_mult))
        if resuming:
            vae = build_vae(arch)
        else:
            vae = load_vae(source, spec)
            if arch != spec.vae:
                from wanray.training.vae_widen import widen_decoder

                vae.model.decoder = widen_decoder(vae.model.decoder, arch)
                print(f"vae-decoder: widened to {arch.decoder_mult} x {arch.dim} channels: "
                      f"{sum(p.numel() for p in vae.model.decoder.parameters()) / 1e6:.2f} M parameters", flush=True)
        spec = replace(spec, vae=arch)
    elif vae_from is not None:  # its architecture and weights; the DiT stage still starts from the bundled DiT
        source, own = vae_from, spec_for_dir(vae_from)
        arch = vae_arch_of(ckpt_dir, own.vae) if resuming else replace(own.vae, dim=vae_dim or own.vae.dim)
        if resuming and vae_dim not in (None, arch.dim):
            raise ValueError(f"{ckpt_dir} holds a VAE of base width {arch.dim}, not {vae_dim}: leave --vae-dim out "
                             "to resume it, or widen on a new --out")
        if arch.dim < own.vae.dim:
            raise ValueError(f"--vae-dim {vae_dim} would narrow the VAE of {vae_from} (base width {own.vae.dim}): "
                             "a continued VAE can only widen; leave --vae-from out for a new, narrower one")
        if resuming:
            vae = build_vae(arch)
        else:
            vae = load_vae(vae_from, own)
            if arch != own.vae:  # wider: the same function at step 0, so the shipped DiT's latents still hold
                from wanray.training.vae_widen import widen_vae

                vae.model = widen_vae(vae.model, arch)
        spec = replace(resolve_model("embedded")[1], vae=arch)
        print(f"vae: continuing the VAE of {vae_from} at base width {arch.dim} (its own: {own.vae.dim}): "
              f"{sum(p.numel() for p in vae.model.parameters()) / 1e6:.2f} M parameters", flush=True)
    else:
        source = None
        spec = resolve_model("embedded")[1]
        spec = replace(spec, vae=VAEArch(dim=vae_dim or spec.vae.dim, z_dim=spec.vae.z_dim))
        vae = build_vae(spec.vae)
        print(f"vae: new VAE of base width {spec.vae.dim}: "
              f"{sum(p.numel() for p in vae.model.parameters()) / 1e6:.2f} M parameters", flush=True)
    model = vae.model.to(device).float().train().requires_grad_(not decoder_only)  # VideoVAE_
    if decoder_only:
        model.conv2.requires_grad_(True)
        model.decoder.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    speed_up_cpu_conv3d(model)
    scale = [s.to(device) for s in vae.scale]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    schedule = lr_lambda(OptimSettings(lr=lr, warmup_steps=warmup, schedule="cosine" if cosine else "constant"), steps)
    state = TrainerState()
    if resuming:  # the whole VAE (frozen parts too) and the optimizer: a run resumes from this folder alone
        fresh = fresh_moments and not (ckpt_dir / OPTIMIZER).is_file()
        weights = load_checkpoint(ckpt_dir, optimizer, fresh_moments=fresh_moments)
        model.load_state_dict(weights)
        state = TrainerState.load(ckpt_dir)
        print(f"{stage}: resumed at step {state.step} from {ckpt_dir}" + (" with fresh Adam moments" if fresh else ""),
              flush=True)

    def save() -> None:
        def write(folder: Path) -> None:
            save_checkpoint(folder, model.state_dict(), optimizer, precision=precision)
            state.save(folder)
            (folder / VAE_ARCH_FILE).write_text(json.dumps(dataclasses.asdict(spec.vae)) + "\n")

        replace_atomically(ckpt_dir, write)

    cuda = device.type == "cuda"
    card = torch.cuda.get_device_name(device) if cuda else "cpu"
    if cuda:  # small odd-shaped 3-D convs: let cuDNN pick its fastest kernels once, in TF32
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    window, started = [], time.perf_counter()
    deadline = started + max_seconds if max_seconds is not None else float("inf")
    clips = None  # decoding every video takes a while: not when resuming only to write the model
    while state.step < steps:
        if time.perf_counter() > deadline:
            print(f"{stage}: --max-seconds {max_seconds:g} reached at step {state.step}", flush=True)
            break
        if clips is None:
            videos = _target_videos(data_dir, entries, data_seed, size, max(clip_frames, 77), keep=out)
            clips = ClipSampler(videos, frames=clip_frames, seed=seed, batch=batch, crop=crop, focus=focus)
            window, started = [], time.perf_counter()
        x = clips.batch_at(state.step).to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule(state.step)  # a function of the step: a resumed run continues the curve
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):  # fp32 weights, bf16 convs on a GPU
            with torch.set_grad_enabled(not decoder_only):
                z = model.encode(x, scale)  # [B, 16, 1 + (T-1)/4, H/8, W/8]
            recon = model.decode(z, scale).clamp(-1, 1)
        error = recon.float() - x
        loss = error.abs().mean() if loss_kind == "l1" else error.pow(2).mean()
        if not decoder_only:  # keep the (Wan-normalised) latents near unit scale, as the DiT expects
            loss = loss + 1e-3 * 0.5 * z.float().pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.samples_seen += x.shape[0]
        window.append(float(loss.detach()))
        if state.step % 10 == 0 or state.step == steps:
            rate = len(window) * x.shape[0] / (time.perf_counter() - started)
            state.history.append({"step": state.step, "loss": float(np.mean(window)), "clips_per_s": rate,
                                  "lr": optimizer.param_groups[0]["lr"], "card": card})
            print(f"{stage}: step {state.step}/{steps}  loss {np.mean(window):.4f}  {rate:.2f} clips/s  "
                  f"lr {optimizer.param_groups[0]['lr']:.2e}  {card}", flush=True)
            window, started = [], time.perf_counter()
        if state.step % save_every == 0:
            save()
    if state.step % save_every or (state.step == 0 and not resuming):  # steps since the last save, or a new step-0 run
        save()
    if checkpoint_only:
        print(f"{stage}: checkpoint at step {state.step} in {ckpt_dir}; no model written (--checkpoint-only)",
              flush=True)
        return None
    vae.model = model.eval().requires_grad_(False).cpu()
    if not decoder_only:
        return _write_model_with_vae(vae, spec, out / "model_vae")
    from wanray.model_writer import write_vae

    folders = [f for f in (out / "model_vae", out / "model") if f.is_dir()]  # same latents: both stay consistent
    for folder in folders:
        replace(spec_for_dir(folder), vae=spec.vae).save(folder)  # a widened decoder's widths
        print(f"{stage}: wrote {write_vae(folder, vae)}", flush=True)
    return source


VAE_ARCH_FILE = "vae_arch.json"


def vae_arch_of(ckpt_dir: Path, default):
    """The ``VAEArch`` a VAE stage's checkpoint was saved with (a widened decoder's widths), or ``default`` for a
    checkpoint older than that file."""
    from wanray.specs import VAEArch

    path = ckpt_dir / VAE_ARCH_FILE
    return VAEArch.from_dict(json.loads(path.read_text())) if path.is_file() else default


def _latest_model_dir(out: Path) -> Path:
    """``<out>/model`` once the DiT stage has run, else ``<out>/model_vae``."""
    for folder in (out / "model", out / "model_vae"):
        if (folder / "wanray_spec.json").is_file():
            return folder
    raise FileNotFoundError(f"neither {out}/model nor {out}/model_vae exists: run --stage vae first")


def _write_model_with_vae(vae, spec, out: Path) -> Path:
    """The bundled embedded model's DiT, VACE and encoders with this VAE (``spec``: the bundled spec with this
    VAE's architecture), written by ``wanray.model_writer.write_model_dir``."""
    from wanray.generation import resolve_model
    from wanray.loading import load_model_dir
    from wanray.model_writer import write_model_dir

    c = load_model_dir(*resolve_model("embedded"))
    path = write_model_dir(out, spec, dits=c.dits, vaces=c.vaces, text_encoder=c.text_encoder, vae=vae,
                           image_encoder=c.image_encoder, tokenizer_dir=c.tokenizer_dir, dit_dtype=torch.float32)
    print(f"vae: wrote {path}", flush=True)
    return path


def train_dit(data_dir: Path, out: Path, device: torch.device, steps: int, lr: float, size: int, frames: int,
              save_every: int, max_seconds: float | None = None, batch: int = 1,
              settings: tuple[str, ...] = ()) -> Path:
    """``settings``: more ``key=value`` overrides of the run's config (``wanray train run --set``), applied last."""
    from wanray.training.config import apply_overrides
    from wanray.training.presets import embedded_full
    from wanray.training.trainer import export_path, run

    model_dir = out / "model_vae"
    if not (model_dir / "wanray_spec.json").is_file():
        raise FileNotFoundError(f"{model_dir} is missing: run --stage vae first (the DiT learns in its VAE's latents)")
    latents = _latent_cache(data_dir, model_dir, out / "latents", size, frames, device)
    overrides = [
        f"model={model_dir.resolve()}", f"data.dataset={data_dir.resolve()}", f"output_dir={out.resolve()}",
        f"data.latent_cache={latents.resolve()}",
        "name=dit_stage", f"max_steps={steps}", "epochs=1000", f"optim.lr={lr}", f"data.height={size}",
        f"data.width={size}", f"data.frames={frames}", f"data.batch_size={batch}",
        f"checkpoint.every_steps={save_every}",
        "validation.every_steps=0", "log_every=10", "data.in_memory=true",
    ]
    if max_seconds:
        overrides.append(f"max_time_s={max_seconds}")
    if device.type == "cuda":
        overrides += ["scaling.use_gpu=true", "strategy.precision=tf32"]
    config = apply_overrides(embedded_full(), [*overrides, *settings])
    result = run(config)
    if result.error:
        raise RuntimeError(f"DiT stage failed: {result.error}")
    exported = export_path(config)
    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    exported.rename(final)
    print(f"dit: wrote {final}", flush=True)
    return final


def _latent_cache(data_dir: Path, model_dir: Path, cache_dir: Path, size: int, frames: int,
                  device: torch.device) -> Path:
    """The train split encoded once by the trained VAE and the frozen encoders (``wanray datasets cache``).

    From pixels, every DiT step re-encodes its clip, prompt and photo: ~3.3 steps/s on an H200 for this tiny DiT.
    """
    from wanray.datasets.cache import CacheConfig, build_cache, cache_matches
    from wanray.datasets.shape import VideoShape

    model, shape = str(model_dir.resolve()), VideoShape(height=size, width=size, frames=frames)
    if not cache_matches(cache_dir, model, shape, "train", dataset=data_dir):
        # The VAE is launch-bound on a GPU (one entry at a time kept it ~20% busy): 16 entries per call, 4 actors
        cuda = device.type == "cuda"
        build_cache(CacheConfig(root=data_dir, out=cache_dir, model=model, split="train", shape=shape,
                                device=device.type, dtype="float32", actors=4 if cuda else 1,
                                gpus_per_actor=0.25 if cuda else 0.0, batch_size=16 if cuda else 4, overwrite=True))
    print(f"dit: latent cache {cache_dir}", flush=True)
    return cache_dir


def _dim_mult(p: argparse.ArgumentParser, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        mult = tuple(int(m) for m in text.split(","))
    except ValueError:
        mult = ()
    if len(mult) != 4 or min(mult) < 1:
        p.error(f"--decoder-dim-mult {text!r}: four positive integers, e.g. 1,2,8,8")
    return mult


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wanray.training.embedded", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", required=True, choices=["vae", "dit", "vae-decoder"])
    p.add_argument("--data", help="synthetic dataset folder (wanray datasets synth)")
    p.add_argument("--entries", type=int, default=0,
                   help="instead of --data: render this many entries of the synthetic set in memory (no files, "
                        "codec or Ray: what a bare GPU host can do at once; the dit stage then runs in one process)")
    p.add_argument("--data-seed", type=int, default=0, help="with --entries: the set's seed (wanray datasets synth)")
    p.add_argument("--checkpoint-precision", choices=["exact", "portable"], default="exact",
                   help="exact (float32, resumes bit for bit) or portable (bf16 weights, float8 Adam "
                        "moments: a third of the size, to carry between machines)")
    p.add_argument("--out", required=True, help="working folder: checkpoints, model_vae/, model/")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=None, help="default 3e-4 (vae), 2e-4 (dit)")
    p.add_argument("--size", type=int, default=128, help="training height = width (multiple of 16)")
    p.add_argument("--frames", type=int, default=17, help="DiT stage clip length, 4n+1")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--batch", type=int, default=8, help="clips (vae stages) or samples (dit stage) per step")
    p.add_argument("--crop", type=int, default=32, help="vae stage: random square crop (0: whole frames)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help="vae stages: frames per clip, 4n+1 (default 13 for vae, 77 for vae-decoder): the causal "
                        "decoder drifts on clips longer than it was trained on")
    p.add_argument("--vae-dim", type=int, default=None,
                   help="vae stage: base width of the new VAE (default: the bundled model's; Wan's own is 96); "
                        "with --vae-from, a larger width widens that VAE from its function (e.g. 40 from 32)")
    p.add_argument("--vae-from", type=Path, default=None, metavar="MODEL_DIR",
                   help="vae stages: continue the VAE of this model folder (e.g. wanray/embedded_model) instead of "
                        "a new one (vae) or of OUT's model (vae-decoder)")
    p.add_argument("--decoder-dim-mult", default=None, metavar="M0,M1,M2,M3",
                   help="vae-decoder: widen the decoder to these widths (x the VAE's base width; the encoder's are "
                        "1,2,4,4) from the old decoder's function, e.g. 1,2,8,8 doubles its two low-resolution stages")
    p.add_argument("--cosine", action="store_true",
                   help="vae stages: decay the learning rate to 0 over --steps (cosine) instead of keeping it")
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                   help="vae stages: linear warm-up over STEPS first (continuing a trained VAE: a fresh Adam at the "
                        "full rate undoes part of its training)")
    p.add_argument("--loss", choices=["l1", "mse"], default="l1",
                   help="vae stages: the reconstruction loss (mse: what PSNR measures)")
    p.add_argument("--focus", type=float, default=0.75,
                   help="vae stages: share of crops centred on a moving pixel (the dancer) rather than anywhere")
    p.add_argument("--checkpoint-only", action="store_true",
                   help="checkpoint but write no model folder (vae stages: while a DiT stage uses it); rerun "
                        "without it and with --max-seconds 0 to write the model")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="dit stage: override a field of the run's config, as `wanray train run --set` "
                        "(e.g. optim.schedule=cosine, strategy.gradient_checkpointing=false); repeatable")
    p.add_argument("--model", type=Path, default=None, metavar="MODEL_DIR",
                   help="dit stage with --entries: the model whose DiT and VACE train, in whose encoders' latents "
                        "(default: the bundled embedded model)")
    p.add_argument("--until", type=int, default=None, metavar="STEP",
                   help="dit stage with --entries: stop this run at STEP; the schedule still ends at --steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh-moments", action="store_true",
                   help="vae stages: resume a checkpoint saved without the optimizer's state, with new Adam moments")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="also stop after this many seconds of training, then write the model as if done")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    data, out, device = Path(args.data) if args.data else None, Path(args.out), torch.device(args.device)
    if (data is None) == (args.entries == 0):
        p.error("give --data DIR (a synth folder) or --entries N (rendered in memory), not both")
    ray_dit = args.stage == "dit" and not args.entries  # the Ray Train loop, which keeps its own checkpoints
    if (args.model or args.until is not None) and not (args.stage == "dit" and args.entries):
        p.error("--model and --until are for the dit stage with --entries")
    if ray_dit and (args.checkpoint_precision != "exact" or args.checkpoint_only):
        p.error("--checkpoint-precision and --checkpoint-only are for the vae stages, or the dit stage with --entries")
    out.mkdir(parents=True, exist_ok=True)
    if args.stage == "dit" and args.entries:
        from wanray.generation import EMBEDDED_MODEL_DIR
        from wanray.training.embedded_dit import train_dit_in_memory

        train_dit_in_memory(out=out, device=device, model_dir=args.model or EMBEDDED_MODEL_DIR, entries=args.entries,
                            data_seed=args.data_seed, steps=args.steps, lr=args.lr or 2e-4, batch=args.batch,
                            size=args.size, frames=args.frames, save_every=args.save_every,
                            max_seconds=args.max_seconds, until=args.until, seed=args.seed,
                            precision=args.checkpoint_precision, checkpoint_only=args.checkpoint_only,
                            settings=tuple(args.settings))
    elif args.stage in ("vae", "vae-decoder"):
        decoder_only = args.stage == "vae-decoder"
        train_vae(data, out, device, args.steps, args.lr or (1e-4 if decoder_only else 3e-4), args.size,
                  args.save_every, args.seed, args.batch, args.crop, args.max_seconds,
                  args.clip_frames or (77 if decoder_only else 13), decoder_only, args.vae_dim, args.focus,
                  args.checkpoint_only, args.vae_from, args.cosine, args.entries, args.data_seed,
                  args.checkpoint_precision, args.warmup, args.loss, _dim_mult(p, args.decoder_dim_mult),
                  args.fresh_moments)
    else:
        train_dit(data, out, device, args.steps, args.lr or 2e-4, args.size, args.frames, args.save_every,
                  args.max_seconds, args.batch, tuple(args.settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
