"""Command line: ``noisetrace scan|train|models``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from noisetrace.errors import NoisetraceError


def _scan(args: argparse.Namespace) -> int:
    from noisetrace.scan import (
        JsonlWriter,
        for_table,
        iter_inputs,
        path_key,
        read_resume,
        scan_paths,
        to_record,
        write_csv,
    )
    from noisetrace.zoo import load_detector

    err = Console(stderr=True)
    det = load_detector(args.model, device=args.device)
    if args.threshold is not None:
        if not 0.0 <= args.threshold <= 1.0:
            err.print("[red]--threshold must be between 0 and 1[/red]")
            return 2
        det.config.threshold = args.threshold
    if args.resume and not args.jsonl:
        err.print("[red]--resume needs --jsonl FILE (the scan to continue)[/red]")
        return 2
    if args.engine == "ray":  # Ray is imported only on this path
        from noisetrace.engines.ray_engine import scan_command

        return scan_command(args, det)

    try:
        listing = iter_inputs(args.paths)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted while listing the inputs: nothing was scanned[/yellow]")
        return 130
    files, errors = listing.files, listing.errors
    old: list[dict] = []  # records of the scan being resumed: every output holds them too
    if args.resume:
        # Inputs are matched by real path, so "./d" continues a scan of "d"; listing errors
        # (a missing input) already recorded are not appended again.
        done, old = read_resume(args.jsonl)
        before = len(files) + len(errors)
        files = [f for f in files if path_key(f) not in done]
        errors = [r for r in errors if path_key(r.path) not in done]
        left = len(files) + len(errors)
        err.print(f"resuming: {before - left} already in {args.jsonl}, {left} to go")
    if listing.skipped_non_media:
        err.print(
            f"[yellow]passed over {len(listing.skipped_non_media)} file(s) in folders that are "
            "not images or videos[/yellow] (name a file explicitly to scan it anyway)"
        )

    records: list[dict] = list(old)
    writer = (
        JsonlWriter(args.jsonl, append=args.resume, frame_scores=args.frame_scores)
        if args.jsonl
        else None
    )
    pq = None
    if args.parquet:
        from noisetrace.engines import ParquetRecordWriter

        pq = ParquetRecordWriter(args.parquet, frame_scores=args.frame_scores, seed_records=old)

    def emit(r) -> None:
        # Every record goes to every output as soon as it exists (valid output on Ctrl-C).
        if writer:
            writer.write(r)
        if pq:
            pq.write(r)
        records.append(to_record(r, frame_scores=args.frame_scores))

    interactive = err.is_terminal and not args.quiet
    progress = Progress(
        TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not interactive or len(files) < 2,
    )  # fmt: skip
    t0 = time.perf_counter()
    interrupted = False
    try:
        with progress:
            task = progress.add_task("scan", total=len(files) + len(errors))
            for r in errors:
                emit(r)
                progress.advance(task)
            for r in scan_paths(det, files, video_frames=args.frames, workers=args.workers):
                emit(r)
                if args.explain and r.verdict == "fake":
                    _explain_flagged(det, r, args.explain, err)
                progress.advance(task)
    except KeyboardInterrupt:
        interrupted = True
        err.print("[yellow]interrupted: the output holds every file finished so far[/yellow]")
    finally:
        if writer:
            writer.close()
        if pq:
            pq.close()
        if args.csv:
            write_csv(args.csv, records)
    elapsed = time.perf_counter() - t0

    if args.json:
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif not args.quiet:
        _print_table(for_table(records), det.name, det.threshold)  # names cannot drive the tty
    n_err = sum(r["verdict"] == "error" for r in records)
    n_fake = sum(r["verdict"] == "fake" for r in records)
    earlier = f" ({len(old)} from the earlier run)" if old else ""
    err.print(
        f"{len(records)} scanned{earlier} in {elapsed:.1f}s: {n_fake} fake, "
        f"{len(records) - n_fake - n_err} real, {n_err} error(s)"
    )
    if interrupted:
        return 130
    return 1 if (args.strict and n_err) else 0


def _explain_flagged(det, r, out_dir: Path, err: Console) -> None:
    """``scan --explain``: overlay + JSON for one flagged file; a failure only warns."""
    from noisetrace.explain.report import explain_file

    try:
        explain_file(det, r.path, out_dir, result=r)
    except Exception as exc:  # noqa: BLE001 - an explanation must never stop the scan
        err.print(f"[yellow]could not explain {escape(r.path)}: {escape(str(exc))}[/yellow]")


def _print_table(records: list[dict], model: str, threshold: float) -> None:
    table = Table(title=f"noisetrace · model {model} · threshold {threshold:.2f}")
    for col in ("file", "kind", "score", "verdict", "frames", "seconds", "error"):
        table.add_column(col, overflow="fold")
    colour = {"fake": "red", "real": "green", "error": "yellow"}
    for r in records:
        score = "" if r["score"] is None else f"{r['score']:.3f}"
        table.add_row(
            escape(r["path"]), r["kind"] or "", score,
            f"[{colour[r['verdict']]}]{r['verdict']}[/]",
            "" if r["frames"] is None else str(r["frames"]),
            f"{r['seconds']:.2f}", escape(r["error"] or ""),
        )  # fmt: skip
    Console().print(table)


def _models(args: argparse.Namespace) -> int:
    from noisetrace import models
    from noisetrace.zoo import list_bundled

    print("bundled detectors:", ", ".join(list_bundled()) or "none")
    print("architectures:", ", ".join(models.list_models()))
    return 0


def _train(args: argparse.Namespace) -> int:
    from noisetrace.train.loop import TrainConfig, train

    cfg = TrainConfig.from_args(args)
    train(cfg)
    return 0


# Subcommands that live beside their feature: each module defines
# ``add_parser(subparsers) -> None`` and keeps heavy imports inside the command function.
_FEATURE_COMMANDS: list[str] = [
    "noisetrace.evaluate.command",
    "noisetrace.explain.command",
    "noisetrace.export",
    "noisetrace.prepare",
    "noisetrace.serve.command",
    "noisetrace.train.stego_command",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="noisetrace",
        description="Tell real images and videos from deepfakes by their noise residuals.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="scan images, videos and folders")
    s.add_argument("paths", nargs="+", help="files or folders (scanned recursively)")
    s.add_argument("--model", default="default", help="bundled model name or model directory")
    s.add_argument("--threshold", type=float, default=None, help="fake if score >= T")
    s.add_argument("--jsonl", type=Path, help="write one JSON record per line to FILE")
    s.add_argument("--csv", type=Path, help="write records as CSV to FILE")
    s.add_argument("--json", action="store_true", help="print records as a JSON list on stdout")
    s.add_argument("--resume", action="store_true", help="continue the scan in --jsonl FILE")
    s.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    s.add_argument("--frames", type=int, default=None, help="frames sampled per video")
    s.add_argument("--frame-scores", action="store_true", help="add per-frame scores (JSON)")
    s.add_argument("--workers", type=int, default=2, help="files in flight at once")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    s.add_argument("--quiet", action="store_true", help="no table, no progress bar")
    s.add_argument("--explain", type=Path, metavar="DIR",
                   help="write an overlay PNG and JSON summary per flagged file to DIR")
    s.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a Ray cluster (pip install 'noisetrace[ray]')")
    s.add_argument("--address", default=None, metavar="ADDR",
                   help="--engine ray: 'auto' or ray://HOST:10001 (default: a local Ray)")
    s.add_argument("--parquet", type=Path, metavar="FILE",
                   help="also write records as Parquet (large runs; needs pyarrow)")
    s.set_defaults(func=_scan)

    m = sub.add_parser("models", help="list bundled detectors and architectures")
    m.set_defaults(func=_models)

    t = sub.add_parser("train", help="train a detector on folders or manifests")
    from noisetrace.train.loop import add_train_arguments

    add_train_arguments(t)
    t.set_defaults(func=_train)

    import importlib

    for mod in _FEATURE_COMMANDS:
        importlib.import_module(mod).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NoisetraceError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
