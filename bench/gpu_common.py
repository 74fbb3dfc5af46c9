"""Shared pieces of the GPU benchmarks: random full-size weights, timing, results with the card's name."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def card_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or 'x86_64'})"


def randomize_(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, std: float = 0.02) -> torch.nn.Module:
    """Materialise a meta-built module on ``device`` with random weights (speed does not depend on values)."""
    module = module.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.normal_(0.0, std, generator=gen)
        for b in module.buffers():
            if b.is_floating_point():
                b.normal_(0.0, std, generator=gen)
    return module.to(dtype)


def timed(fn, repeats: int = 3, warmup: int = 1) -> dict:
    """Median wall time of ``fn`` (device-synchronised), after ``warmup`` untimed calls."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "all_s": times}


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    card = card_name()
    payload = {"card": card, "torch": torch.__version__, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               **payload}
    slug = card.lower().replace(" ", "-").replace("/", "-")
    path = RESULTS / f"{name}--{slug}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    out = os.environ.get("OUT")  # the device tool brings files under $OUT back
    if out:
        Path(out, path.name).write_text(path.read_text())
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(f"{r.get(c, '')}") for r in rows)) for c in columns]
    line = lambda vals: "  ".join(f"{v:<{w}}" for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line([f"{r.get(c, '')}" for c in columns]) for r in rows])
