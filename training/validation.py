"""Validation during training: generate a few held-out entries with the current weights, score them.

PSNR/SSIM against each entry's reference video come from ``wanray.metrics.compare_videos``; the
scores go into the Ray Train report and TensorBoard, the videos into ``<run>/validation/step_N/``.
With ZeRO-3 the parameters are sharded, so every rank runs the same generations (each forward
gathers layers collectively); otherwise rank 0 generates alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from wanray.training.config import ValidationSettings

log = logging.getLogger(__name__)


class Validator:
    def __init__(self, settings: ValidationSettings, generator, samples: list, out_dir: Path, writer=None,
                 write_files: bool = True):
        self.settings = settings
        self.generator = generator
        self.samples = samples  # TrainingSample list (video = reference)
        self.out_dir = Path(out_dir)
        self.writer = writer
        self.write_files = write_files

    def run(self, step: int, module: torch.nn.Module) -> dict[str, float]:
        from wanray.config import GenerationConfig
        from wanray.metrics import compare_videos
        from wanray.video import frames_to_array, write_mp4

        was_training = module.training
        module.eval()
        psnr, ssim = [], []
        try:
            for i, sample in enumerate(self.samples):
                reference = frames_to_array(sample.video)  # [T, H, W, 3] uint8
                result = self.generator.generate(
                    GenerationConfig(
                        image=sample.input_image if sample.input_image is not None else sample.video[0],
                        prompt=sample.prompt,
                        vace_video=sample.vace_video,
                        vace_video_mask=sample.vace_video_mask,
                        vace_reference_image=sample.vace_reference_image,
                        height=reference.shape[1],
                        width=reference.shape[2],
                        frames=reference.shape[0],
                        steps=self.settings.steps,
                        cfg=self.settings.cfg,
                        seed=self.settings.seed,
                        tiled_vae=False,
                    )
                )
                generated = frames_to_array(result.frames)
                metrics = compare_videos(generated, reference)
                psnr.append(metrics.psnr_mean)
                ssim.append(metrics.ssim_mean)
                if self.write_files:
                    folder = self.out_dir / f"step_{step:06d}"
                    write_mp4(result.frames, folder / f"{i:02d}_generated.mp4", result.fps)
                    write_mp4(sample.video, folder / f"{i:02d}_reference.mp4", result.fps)
                    if self.writer is not None:
                        middle = len(generated) // 2
                        strip = np.concatenate([reference[middle], generated[middle]], axis=1)  # [H, 2W, 3]
                        self.writer.add_image(f"validation/{i:02d}_reference_vs_generated", strip, step,
                                              dataformats="HWC")
        finally:
            module.train(was_training)
        scores = {"val_psnr": float(np.mean(psnr)), "val_ssim": float(np.mean(ssim))}
        if self.writer is not None and self.write_files:
            for k, v in scores.items():
                self.writer.add_scalar(k.replace("_", "/", 1), v, step)
        log.info("validation at step %d: PSNR %.2f dB, SSIM %.4f over %d entries", step, scores["val_psnr"],
                 scores["val_ssim"], len(self.samples))
        return scores
