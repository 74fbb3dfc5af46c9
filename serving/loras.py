"""LoRAs by name: a request names a LoRA; the file is ``<lora_dir>/<name>.safetensors`` and nothing else.

The name is checked before it touches the filesystem (letters, digits, ``._-``; no ``..``, no slashes, so
no absolute paths), and the resolved file must still be inside the folder (a symlink out is refused).
"""

from __future__ import annotations

import re
from pathlib import Path

from wanray.inputs import InvalidInput

LORA_SUFFIX = ".safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
MAX_NAME = 100


def check_lora_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise InvalidInput(
            f"LoRA name must be 1-{MAX_NAME} letters, digits, '_', '-' or single dots between them "
            f"(a name from GET /v1/loras, not a path)"
        )
    return name


def resolve_lora(lora_dir: str | Path | None, name: str) -> Path:
    """The LoRA file for ``name``, confined to ``lora_dir``; InvalidInput (a 422) otherwise."""
    check_lora_name(name)
    if lora_dir is None:
        raise InvalidInput("this server has no LoRAs configured; leave lora empty")
    root = Path(lora_dir).resolve()
    candidate = root / f"{name}{LORA_SUFFIX}"
    resolved = candidate.resolve()
    if resolved.parent != root and root not in resolved.parents:
        raise InvalidInput(f"LoRA {name!r} is not available on this server")  # a symlink pointing outside
    if not resolved.is_file():
        available = list_loras(lora_dir)
        hint = f"; available: {', '.join(available)}" if available else "; this server has none"
        raise InvalidInput(f"unknown LoRA {name!r}{hint}")
    return resolved


def list_loras(lora_dir: str | Path | None) -> list[str]:
    """Names of the usable LoRAs (files inside the folder, symlinks out left out)."""
    if lora_dir is None or not Path(lora_dir).is_dir():
        return []
    root = Path(lora_dir).resolve()
    names = []
    for path in sorted(root.glob(f"*{LORA_SUFFIX}")):
        name = path.name[: -len(LORA_SUFFIX)]
        resolved = path.resolve()
        if _NAME.match(name) and root in resolved.parents and resolved.is_file():
            names.append(name)
    return names
