"""The ``wanray`` command line.

    wanray generate --image photo.jpg --prompt "an anime girl dancing" --out fairy.mp4
    wanray demo                      # the bundled example photo through the embedded model
    wanray <group> --help            # datasets, train, eval, serve, cluster, job

Each sub-command lives in its own module with a ``register(subparsers)`` function; heavy imports
(torch, Ray) happen only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (module, what it adds); a module that is not importable (its extra is not installed) is skipped.
COMMAND_MODULES = (
    "wanray.cli_generate",
    "wanray.datasets.cli",
    "wanray.training.cli",
    "wanray.evaluation_cli",
    "wanray.serving.cli",
    "wanray.raycluster.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wanray",
        description="Photo -> dancing anime video with Wan image-to-video models: generate, fine-tune, serve, on Ray.",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging verbosity"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (e.name == name or name.startswith(e.name + ".")):
                continue  # that part of wanray is not in this build
            raise
        module.register(sub)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True
    )
    for noisy in ("urllib3", "filelock", "PIL", "matplotlib", "modelscope"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # user-facing errors: one clear line, no traceback (use --log-level DEBUG for one)
        logging.getLogger("wanray").debug("error", exc_info=True)
        print(f"wanray {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
