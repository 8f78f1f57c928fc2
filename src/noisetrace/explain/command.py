"""``noisetrace explain``: overlays, JSON summaries, noise traces and DJIN's intensity analysis.

    noisetrace explain photo.jpg clip.mp4 --method ig --out evidence/
    noisetrace explain face.png --traces --face 40,30,96,96 --out evidence/
    noisetrace explain ../shared/data/cnndetection_ranking --intensity --out analysis/
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from noisetrace.explain.render import MAX_SIZE, MIN_SIZE


def _face_box(text: str) -> tuple[int, int, int, int]:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(
            "--face wants x,y,width,height in pixels, e.g. 40,30,96,96"
        )
    x, y, w, h = vals
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError("--face width and height must be positive")
    return (x, y, x + w, y + h)  # media.crops boxes are x0, y0, x1, y1


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``noisetrace explain`` (registered in ``noisetrace.cli.COMMANDS``)."""
    p.description = (
        "Writes <file>.overlay.png (the explanation over the image, with a title: file, verdict, "
        "score, threshold, model; and a colour legend) and <file>.explain.json (score, verdict, "
        "top regions) for each input. With --intensity, treats the inputs as labelled data "
        "(folders with MANIFEST.tsv or real/ fake/ folders, or manifests) and writes DJIN's "
        "pixel-intensity analysis (intensity.png, intensity.json)."
    )
    p.epilog = """examples:
  noisetrace explain photo.jpg clip.mp4 --out evidence/
  noisetrace explain photo.jpg --method ig --baseline blurred --steps 32 --out evidence/
  noisetrace explain photo.jpg --max-size 0 --out evidence/     # full-resolution overlay
  noisetrace explain face.png --traces --face 40,30,96,96 --out evidence/
  noisetrace explain my_data/ --intensity --max-images 60 --out analysis/"""
    p.add_argument("paths", nargs="+",
                   help="images, videos or folders (labelled data with --intensity)")
    p.add_argument("--model", default="default", help="bundled model name or model directory")
    p.add_argument("--method", choices=("heatmap", "ig", "occlusion"), default="heatmap",
                   help="heatmap: local fake probability (fast); ig: Integrated Gradients; "
                        "occlusion: the score's fall when each region is blurred (any model; "
                        "models fitted on frozen features, such as default, always use it)")
    p.add_argument("--out", default="explanations", help="output folder")
    p.add_argument("--max-size", type=int, default=MAX_SIZE, metavar="N",
                   help=f"longer side of the overlay figure in pixels (default {MAX_SIZE}; the "
                        "map is computed at full resolution either way); 0: full resolution")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr, per file and per batch of IG steps (default: a "
                        "bar when stderr is a terminal, nothing otherwise; --progress also "
                        "writes plain lines to logs and pipes)")
    p.add_argument("--window", type=int, default=64, help="region size in pixels (default 64)")
    p.add_argument("--regions", type=int, default=5, help="top regions listed in the JSON "
                   "(default 5)")
    p.add_argument("--baseline", choices=("black", "blurred", "noise"), default="black",
                   help="IG starting image (default black)")
    p.add_argument("--steps", type=int, default=32, help="IG integration steps (default 32)")
    p.add_argument("--batch", type=int, default=4,
                   help="IG path points evaluated at once; lower it to save memory")
    p.add_argument("--traces", action="store_true",
                   help="also write <file>.traces.png: SRM and Siamese DnCNN noise, "
                        "face vs background")
    p.add_argument("--face", type=_face_box, default=None,
                   help="face box x,y,width,height for --traces (default: detect one)")
    p.add_argument("--face-backend", default="auto",
                   help="face detection backend for --traces without --face (auto, skimage, "
                        "opencv, ...; 'none': use the centre square)")
    p.add_argument("--siamese", default="auto",
                   help="noise extractor for --traces: a trained siamese-dncnn model directory, "
                        "a pre-trained DnCNN checkpoint file, 'auto' (a bundled siamese-dncnn "
                        "model if any, else SRM only) or 'none'")
    p.add_argument("--intensity", action="store_true",
                   help="run DJIN's pixel-intensity analysis over labelled data instead")
    p.add_argument("--max-images", type=int, default=None,
                   help="--intensity: at most this many images per class")
    p.add_argument("--max-side", type=int, default=512,
                   help="--intensity: centre-crop images to this side (default 512)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.set_defaults(func=run, needs=needs)  # fmt: skip


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional modules this command line needs (checked before any work)."""
    out = {}
    if args.method == "ig" or args.intensity:  # the intensity analysis runs IG too
        out["captum"] = "noisetrace[explain]"
    if args.traces or args.intensity:  # their figures
        out["matplotlib"] = "noisetrace[explain]"
    return out


def run(args: argparse.Namespace) -> int:
    """Entry point of ``noisetrace explain``; returns the exit code."""
    from rich.console import Console
    from rich.markup import escape  # paths and messages may hold [brackets]

    from noisetrace.errors import NoisetraceError
    from noisetrace.zoo import load_detector

    err = Console(stderr=True, soft_wrap=True)  # long paths stay whole in logs
    if args.steps < 1 or args.batch < 1 or args.window < 1:
        err.print("[red]--steps, --batch and --window must be at least 1[/red]")
        return 2
    if args.max_size and args.max_size < MIN_SIZE:
        err.print(f"[red]--max-size must be 0 (full resolution) or at least {MIN_SIZE} pixels, "
                  "room for the title and legend[/red]")  # fmt: skip
        return 2
    det = load_detector(args.model, device=args.device)
    if args.intensity:
        return _intensity(args, det, err)

    siamese = None
    if args.traces and args.siamese != "none":
        from noisetrace.explain.traces import bundled_siamese, load_siamese

        spec = bundled_siamese() if args.siamese == "auto" else args.siamese
        if spec is None:
            err.print(
                "[yellow]noise traces: SRM only (no bundled siamese-dncnn model; pass "
                "--siamese with a trained model directory or a DnCNN checkpoint)[/yellow]"
            )
        else:
            siamese = load_siamese(spec)

    from noisetrace.explain.report import explain_file
    from noisetrace.scan import iter_inputs

    backend = None if args.face_backend == "none" else args.face_backend
    listing = iter_inputs(args.paths)
    for r in listing.errors:
        err.print(f"[yellow]{escape(r.path)}: {escape(r.error or '')}[/yellow]")
    n_ok, n_bad = 0, len(listing.errors)
    shown = _Progress(err, len(listing.files), args.progress)
    with shown:
        for i, f in enumerate(listing.files):
            shown.start(i, f, args.method)
            try:
                s = explain_file(
                    det, f, args.out, args.method, traces=args.traces, face=args.face,
                    siamese=siamese, face_backend=backend, max_size=args.max_size,
                    window=args.window, regions=args.regions, baseline=args.baseline,
                    steps=args.steps, internal_batch_size=args.batch, progress=shown.step,
                )  # fmt: skip
            except NoisetraceError as exc:
                err.print(f"[yellow]{escape(f)}: {escape(str(exc))}[/yellow]")
                n_bad += 1
                continue
            finally:
                shown.finish()
            n_ok += 1
            colour = "red" if s["verdict"] == "fake" else "green"
            err.print(
                f"{escape(f)}: [{colour}]{s['verdict']}[/] {s['score']:.3f} -> "
                f"{escape(str(args.out))}/{escape(s['files']['overlay'])}", highlight=False,
            )  # fmt: skip
    err.print(f"{n_ok} explained into {escape(str(args.out))}, {n_bad} could not be explained")
    return 0 if n_ok or not n_bad else 1


class _Progress:
    """Progress on stderr, per file and per batch of Integrated Gradients path points.

    ``mode`` None (the default): a transient rich bar when stderr is a terminal, nothing
    otherwise (logs and pipes already get one result line per file, as with ``scan``); True:
    the bar on a terminal, plain lines elsewhere, at every quarter of a file's IG work and at
    least every 10 s; False: nothing.
    """

    LINE_EVERY_S = 10.0

    def __init__(self, err: Any, n_files: int, mode: bool | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        show = err.is_terminal if mode is None else mode
        self.err, self.n = err, n_files
        self.lines = show and not err.is_terminal
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), TimeElapsedColumn(),
            console=err, transient=True, disable=not (show and err.is_terminal),
        )  # fmt: skip
        self.files = self.bar.add_task("explaining", total=n_files, visible=n_files > 1)
        self.work: Any = None
        self.name, self.t0, self.t_last, self.quarter = "", 0.0, 0.0, 0

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def start(self, i: int, path: str, method: str) -> None:
        from pathlib import Path

        self.name = Path(path).name
        self.t0 = self.t_last = time.monotonic()
        self.quarter = 0
        if self.lines:
            self.err.print(f"[{i + 1}/{self.n}] {self.name}: explaining ({method})",
                           markup=False, highlight=False)  # fmt: skip
        self.work = self.bar.add_task(f"  {self.name}", total=None)

    def step(self, done: int, total: int) -> None:
        """``progress`` callback of :func:`~noisetrace.explain.report.explain_array`."""
        self.bar.update(self.work, completed=done, total=total,
                        description=f"  {self.name}: integrated gradients")  # fmt: skip
        if not self.lines:
            return
        now = time.monotonic()
        quarter = 4 * done // max(1, total)
        if quarter > self.quarter or now - self.t_last >= self.LINE_EVERY_S:
            self.quarter, self.t_last = quarter, now
            self.err.print(
                f"  {self.name}: integrated gradients {100 * done // max(1, total)}% "
                f"({done}/{total} passes, {now - self.t0:.0f} s)", markup=False, highlight=False,
            )  # fmt: skip

    def finish(self) -> None:
        if self.work is not None:
            self.bar.remove_task(self.work)
            self.work = None
        self.bar.advance(self.files)


def _intensity(args: argparse.Namespace, det, err) -> int:
    """DJIN's pixel-intensity analysis over labelled inputs."""
    from noisetrace.data.manifest import discover
    from noisetrace.explain.intensity import run_intensity_analysis, save_analysis
    from noisetrace.explain.numbers import fmt_num

    samples = []
    for spec in args.paths:
        samples += discover(spec, images_only=True)
    by_class: dict[int, list] = {0: [], 1: []}
    for s in samples:
        by_class[s.label].append(s)
    if args.max_images:
        # Spread the cap over generators/datasets rather than taking the first folder only.
        for c in by_class:
            ordered = sorted(by_class[c], key=lambda s: (s.dataset, s.generator, s.path))
            step = max(1, len(ordered) // args.max_images)
            by_class[c] = ordered[::step][: args.max_images]
    todo = [(s.path, s.label) for c in (0, 1) for s in by_class[c]]
    if not todo:
        err.print(
            "[red]no labelled images found; give folders with MANIFEST.tsv or real/ fake/[/red]"
        )
        return 2
    err.print(
        f"intensity analysis: {len(by_class[0])} real, {len(by_class[1])} fake images, "
        f"IG {args.steps} steps from a {args.baseline} baseline"
    )

    def progress(i: int, name: str, logit: float) -> None:
        if args.progress is not False and ((i + 1) % 10 == 0 or i + 1 == len(todo)):
            err.print(f"  {i + 1}/{len(todo)}")

    ana = run_intensity_analysis(
        det, todo, max_side=args.max_side, baseline=args.baseline, steps=args.steps,
        internal_batch_size=args.batch, on_image=progress,
    )  # fmt: skip
    paths = save_analysis(ana, args.out, title=f"model {det.name}: IG top 1% by pixel value")
    s = ana.summary()
    for name in ("real", "fake"):
        c = s[name]
        if c.get("images"):
            err.print(
                f"{name}: {c['images']} images, P(top) dark {fmt_num(c['p_top_dark'])}, "
                f"mid {fmt_num(c['p_top_mid'])}, bright {fmt_num(c['p_top_bright'])} "
                f"(no preference: {fmt_num(s['top_fraction'])}), mean value top "
                f"{c['mean_value_top']:.1f} vs all {c['mean_value_all']:.1f}", highlight=False,
            )
    err.print("wrote " + ", ".join(str(p) for p in paths), markup=False)
    return 0
