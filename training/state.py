"""Where a run is: optimizer step and data position, saved with every checkpoint.

The data position is (pass, rows consumed in that pass) per worker: a resumed run skips exactly the
rows it already trained on, so with the per-step seeded noise (``flow.step_generator``) it replays
the uninterrupted run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "trainer_state.json"


@dataclass(kw_only=True)
class TrainerState:
    step: int = 0  # optimizer steps done
    pass_index: int = 0  # epoch * repeat + repetition
    rows_done: int = 0  # rows of pass ``pass_index`` already trained on, per worker
    samples_seen: int = 0  # over all workers
    history: list[dict] = field(default_factory=list)  # logged metrics, for plots and tests
    train_seconds: float = 0.0  # training time so far, over every start of the run (max_time_s counts all of it)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> "TrainerState":
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a wanray training checkpoint (no {STATE_FILE})")
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What the driver worked out before starting the workers (all ranks get the same)."""

    rows: int  # training rows in the dataset
    rows_per_worker: int  # per pass (Ray Data's equal split drops the remainder)
    steps_per_pass: int
    total_steps: int
    source: str  # "cache" or "pixels"
    source_reason: str
    rows_unused_per_pass: int = 0  # the split's remainder and each worker's rows short of a whole step

    def to_dict(self) -> dict:
        return asdict(self)


def make_plan(*, rows: int, num_workers: int, grad_accum: int, repeat: int, epochs: int, max_steps: int | None,
              source: str, source_reason: str, batch_size: int = 1) -> RunPlan:
    rows_per_worker = rows // num_workers
    steps_per_pass = rows_per_worker // (grad_accum * batch_size)
    if steps_per_pass == 0:
        raise ValueError(
            f"the training split has {rows} entries: fewer than {num_workers} workers x {grad_accum} accumulation "
            f"steps x {batch_size} per batch; add data, or lower scaling.num_workers / optim.grad_accum / "
            f"data.batch_size"
        )
    total = steps_per_pass * repeat * epochs
    if max_steps is not None:
        total = min(total, max_steps)
    return RunPlan(rows=rows, rows_per_worker=rows_per_worker, steps_per_pass=steps_per_pass, total_steps=total,
                   source=source, source_reason=source_reason,
                   rows_unused_per_pass=rows - num_workers * steps_per_pass * grad_accum * batch_size)
