"""Job entry point: train a preset on the Ray cluster this process is connected to.

    python -m wanray.training.train --preset embedded_lora_smoke
    python -m wanray.training.train --preset wan21_i2v_720p_lora --set data.dataset=/data/dance --set scaling.num_workers=8
    ray job submit --address http://HEAD:8265 -- python -m wanray.training.train --preset embedded_lora_smoke

It connects with ``ray.init()`` (RAY_ADDRESS, or the cluster of the job it runs in) and prints progress
(loss, learning rate, samples/s, checkpoints, validation scores) to the job log; the run also shows in
the dashboard's Train view. Rerunning the same command resumes from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from wanray.training.cli import _add_preset_args, load_config

    parser = argparse.ArgumentParser(prog="python -m wanray.training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_preset_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        config = load_config(args.preset, args.overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from wanray.training.trainer import export_path, run

    result = run(config)
    if result.error:
        print(f"training failed: {result.error}", file=sys.stderr)
        return 1
    print(f"trained {config.name}: {export_path(config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
