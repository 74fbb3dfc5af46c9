"""The ``synthetic`` dataset of the embedded presets: ``wanray.datasets.synth`` rendered once per run folder."""

from __future__ import annotations

import logging
from pathlib import Path

from wanray.training.config import DataSettings

log = logging.getLogger(__name__)

DEFAULT_ENTRIES = 48  # ~43 train / ~5 test entries (the split is a hash of each id)


def ensure_synthetic_dataset(folder: Path, data: DataSettings, seed: int = 0) -> Path:
    """Render the synthetic set into ``folder`` unless it is already complete there; returns the folder."""
    from wanray.datasets.synth import SynthConfig, generate

    folder = Path(folder)
    if (folder / "metadata.csv").is_file():
        return folder
    n = max(8, 2 * data.limit) if data.limit else DEFAULT_ENTRIES
    log.info("rendering %d synthetic entries (%dx%d, %d frames) into %s", n, data.height, data.width, data.frames,
             folder)
    generate(SynthConfig(n=n, out=folder, seed=seed, height=data.height, width=data.width, frames=data.frames,
                         fps=data.fps, resume=folder.exists()))
    return folder
