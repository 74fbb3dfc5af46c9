"""Small synthetic sets rendered in this process (no Ray): 64x64, 9 frames."""

import shutil
from pathlib import Path

import pytest

SMALL = dict(height=64, width=64, frames=9, fps=15.0)


def render_set(root: Path, n: int, seed: int = 0, **kw) -> Path:
    """Render ``n`` entries with the generator's own per-entry code and write the manifest."""
    from wanray.datasets.schema import write_manifest
    from wanray.datasets.synth import SynthConfig, plan_entry, render_entry

    config = SynthConfig(n=n, out=root, seed=seed, **{**SMALL, **kw})
    write_manifest(root, [render_entry(config, plan_entry(config, i)) for i in range(n)])
    return root


@pytest.fixture(scope="session")
def base_set(tmp_path_factory) -> Path:
    """Three valid entries; copy it before changing anything (see ``fresh_set``)."""
    return render_set(tmp_path_factory.mktemp("base_set"), 3, seed=11)


@pytest.fixture
def fresh_set(base_set, tmp_path) -> Path:
    root = tmp_path / "set"
    shutil.copytree(base_set, root)
    return root
