"""``wanray datasets``: make, check, split, cache and look at training sets.

    wanray datasets synth --n 50 --out data/quick            # procedural photo -> anime dance entries (Ray)
    wanray datasets validate data/quick --report report.json  # every row checked; bad rows quarantined
    wanray datasets split data/quick                         # train/test counts of the 9:1 id-hash split
    wanray datasets cache data/quick --out data/quick-cache  # frozen-encoder outputs as Parquet (Ray)
    wanray datasets show data/quick [--id s0-00003]          # what a set holds; one entry in detail

Heavy imports (Ray, torch) happen only inside the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path


def module_main(module, argv: list[str] | None, errors: tuple[type[Exception], ...]) -> int:
    """``python -m wanray.datasets.<name>``: ``module``'s ``add_arguments`` and ``run``, INFO logs, and the
    ``errors`` a user can fix printed as one line (``<name>: error: ...``, exit 1) instead of a traceback."""
    import logging

    dotted = module.__spec__.name  # not __name__, which is "__main__" under python -m
    name = dotted.rpartition(".")[2]
    parser = argparse.ArgumentParser(prog=f"python -m {dotted}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        return module.run(args)
    except errors as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1


def register(sub) -> None:
    from wanray.datasets import cache, synth

    group = sub.add_parser(
        "datasets",
        help="make, validate, split, cache and inspect datasets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = group.add_subparsers(dest="datasets_command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "synth",
        help="render a synthetic photo -> dancing anime set with Ray",
        description=synth.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_arguments(p)
    p.set_defaults(func=synth.run)

    p = commands.add_parser(
        "validate",
        help="check every row; report and quarantine bad ones",
        description=_validate_doc(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", help="dataset folder (metadata.csv or metadata.parquet + media)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any row is quarantined")
    _shape_arguments(p)
    p.add_argument(
        "--model",
        default="embedded",
        help="model whose tokenizer bounds prompt length (embedded, a spec name or a directory; default embedded)",
    )
    p.add_argument("--model-spec", default=None, help="spec of --model DIR when it cannot be recognised")
    p.add_argument("--no-token-check", action="store_true", help="skip the prompt-length check (no model needed)")
    p.add_argument("--report", default=None, help="write the full JSON report here")
    p.add_argument("--quarantine", default=None, help="write the bad rows (with their reasons) to this CSV")
    p.add_argument("--workers", type=int, default=4, help="rows checked at once (default 4)")
    p.set_defaults(func=run_validate)

    p = commands.add_parser("split", help="train/test counts of the deterministic 9:1 split")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=run_split)

    p = commands.add_parser(
        "cache",
        help="encode a split with the frozen encoders into a Parquet latent cache (Ray)",
        description=cache.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cache.add_arguments(p)
    p.set_defaults(func=cache.run)

    p = commands.add_parser("show", help="summarise a dataset, or one entry with --id")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--id", default=None, help="show this entry: its cells and each medium's frames, fps and size")
    p.set_defaults(func=run_show)


def _validate_doc() -> str:
    from wanray.datasets import validate

    return validate.__doc__


def _shape_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("job shape (all four, or none to check rows only against themselves)")
    g.add_argument("--height", type=int, default=None, help="output height, a multiple of 16")
    g.add_argument("--width", type=int, default=None, help="output width, a multiple of 16")
    g.add_argument("--frames", type=int, default=None, help="frames per entry, 4n+1")
    g.add_argument("--fps", type=float, default=None, help="frame rate frames are sampled at")


def _shape_from(args: argparse.Namespace):
    from wanray.datasets.shape import VideoShape

    given = {k: getattr(args, k) for k in ("height", "width", "frames", "fps") if getattr(args, k) is not None}
    if not given:
        return None
    missing = [f"--{k}" for k in ("height", "width", "frames", "fps") if k not in given]
    if missing:
        raise ValueError(f"a job shape needs --height, --width, --frames and --fps; missing {', '.join(missing)}")
    return VideoShape(**given)


def run_validate(args: argparse.Namespace) -> int:
    from wanray.datasets.validate import ValidationConfig, validate, write_quarantine, write_report

    config = ValidationConfig(
        root=Path(args.root),
        shape=_shape_from(args),
        model=None if args.no_token_check else args.model,
        model_spec=args.model_spec,
        workers=args.workers,
    )
    report = validate(config)
    print(report.table())
    print(report.summary())
    if args.report:
        print(f"report: {write_report(report, args.report).resolve()}")
    if args.quarantine and report.quarantine:
        print(f"quarantine: {write_quarantine(report, args.quarantine).resolve()}")
    return 1 if args.strict and report.quarantined else 0


def run_split(args: argparse.Namespace) -> int:
    from wanray.datasets.schema import RowError, duplicate_ids, parse_row, read_records
    from wanray.datasets.split import split_counts

    _, records = read_records(args.root)
    duplicated = duplicate_ids(records)
    ids, unreadable = [], 0
    for line, record in records:
        try:
            entry_id = parse_row(record, line).id
        except RowError:
            unreadable += 1
            continue
        if entry_id in duplicated:  # counted as unreadable, like any row the schema rejects
            unreadable += 1
        else:
            ids.append(entry_id)
    counts = {**split_counts(ids), "unreadable_rows": unreadable}
    if args.json:
        print(json.dumps(counts))
    else:
        print(
            f"train {counts['train']}  test {counts['test']}  total {counts['total']}"
            + (f"  (+{unreadable} rows that fail the schema or share an id; run `wanray datasets validate`)"
               if unreadable else "")
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from wanray.datasets.schema import read_manifest
    from wanray.datasets.split import split_counts, split_of

    rows = read_manifest(args.root)
    if args.id is None:
        counts = split_counts(r.id for r in rows)
        print(f"{args.root}: {len(rows)} entries (train {counts['train']}, test {counts['test']})")
        for column in ("dance", "scene"):
            values = Counter(r.extra.get(column) for r in rows if r.extra.get(column))
            if values:
                print(f"  {column}: " + ", ".join(f"{k} {v}" for k, v in sorted(values.items())))
        optional = {c: sum(1 for r in rows if getattr(r, c)) for c in ("vace_video_mask", "vace_reference_image")}
        print("  optional media: " + ", ".join(f"{c} {n}" for c, n in optional.items()))
        return 0
    matches = [r for r in rows if r.id == args.id]
    if not matches:
        print(f"no entry with id {args.id!r} in {args.root}", file=sys.stderr)
        return 1
    row = matches[0]
    from wanray.datasets.schema import resolve_media
    from wanray.datasets.media import probe_video

    print(f"{row.id} (line {row.line}, {split_of(row.id)})\n  prompt: {row.prompt}")
    for column, relative in row.media().items():
        path = resolve_media(args.root, relative, column)
        if column in ("input_image", "vace_reference_image"):
            from PIL import Image

            with Image.open(path) as image:
                print(f"  {column}: {relative} ({image.width}x{image.height})")
        else:
            info = probe_video(path)
            print(f"  {column}: {relative} ({info.frames} frames, {info.fps:g} fps, {info.size()})")
    for key, value in row.extra.items():
        print(f"  {key}: {value}")
    return 0
