"""Rebuild a public image collection from its selection list and fetched repository snapshots.

The images are never committed; the selection is. Each row of a selection TSV names one file:

    repo  commit  path  folder  label  generator  sha256  [transform]  [group ...]

``repo`` is ``owner/name``, ``path`` the file inside it, ``folder`` the output folder
(usually the family), ``sha256`` that of the blob in the repository (before any transform).
``transform`` names a function in :data:`TRANSFORMS` (empty: the bytes are copied as they
are, never re-encoded); any further column (``group``, ``identity``) is carried into the
manifest. The snapshots are the bare git directories the session tool ``fetch``
brings into ``--mirror`` (``<mirror>/<owner>+<name>/repo``).

    python scripts/data/rebuild.py scripts/data/public1.tsv --mirror /work/.mirror \\
        --out ../data/public

Writes ``<out>/<folder>/<file>`` and one ``MANIFEST.tsv`` per folder
(``path label generator width height format source`` and the extra columns; source =
``owner/name@commit:path``). Images are checked by decoding them (PIL), videos by PyAV.
A file that is missing, altered or unreadable is reported with its reason and the rest
goes on; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from PIL import Image

COLUMNS = ("repo", "commit", "path", "folder", "label", "generator", "sha256")
MANIFEST_COLUMNS = ("path", "label", "generator", "width", "height", "format", "source")
VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".avi", ".mkv"}


def _crop_card(data: bytes) -> tuple[bytes, str]:
    # Loaded on first use from beside this script: only the web-cards rows need it.
    import importlib.util

    if "crop_cards" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "crop_cards", Path(__file__).with_name("crop_cards.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["crop_cards"] = mod
    return sys.modules["crop_cards"].crop_card(data)


#: transform name -> function(blob bytes) -> (output bytes, output suffix)
TRANSFORMS: dict[str, Callable[[bytes], tuple[bytes, str]]] = {"crop_card": _crop_card}


def git_dir(mirror: Path, repo: str) -> Path:
    """The bare git directory of ``repo``'s snapshot under ``mirror``."""
    root = mirror / repo.replace("/", "+") / "repo"
    for cand in (root / ".git", root):
        if (cand / "HEAD").is_file():
            return cand
    raise FileNotFoundError(f"no snapshot of {repo} under {mirror}: fetch github:{repo} first")


def read_blob(gdir: Path, commit: str, path: str) -> bytes:
    """The file at ``commit`` (else at the snapshot's HEAD; the SHA-256 check decides)."""
    for rev in (commit, "HEAD"):
        r = subprocess.run(
            ["git", "--git-dir", str(gdir), "cat-file", "blob", f"{rev}:{path}"],
            capture_output=True,
        )
        if r.returncode == 0:
            return r.stdout
    raise FileNotFoundError(f"{path} is in neither {commit[:12]} nor HEAD of the snapshot")


def out_name(repo: str, path: str, suffix: str | None = None) -> str:
    """``owner__name__dir__file.ext``: unique across repositories, readable."""
    name = f"{repo.replace('/', '__')}__{path.replace('/', '__')}"
    return str(Path(name).with_suffix(suffix)) if suffix else name


def _probe(blob: bytes, suffix: str) -> tuple[int, int, str]:
    """Width, height and format, decoding the whole file (a truncated file fails here)."""
    if suffix in VIDEO_SUFFIXES:
        import av  # only the face sources hold videos

        with av.open(io.BytesIO(blob)) as c:
            stream = c.streams.video[0]
            frames = sum(1 for _ in c.decode(stream))
            if not frames:
                raise ValueError("no decodable video frame")
            return stream.codec_context.width, stream.codec_context.height, suffix[1:].upper()
    with Image.open(io.BytesIO(blob)) as im:
        im.load()
        return im.width, im.height, im.format or ""


def _write_atomic(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def rebuild(
    selection: Path, mirror: Path, out: Path, manifests: dict[str, list[dict[str, str]]]
) -> list[str]:
    """Copy every selected file, adding its manifest row to ``manifests[folder]``; return one
    error line per file that failed."""
    with selection.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise SystemExit(f"{selection}: columns missing: {', '.join(missing)}")
    errors: list[str] = []
    seen: dict[str, str] = {}
    for row in rows:
        src = f"{row['repo']}@{row['commit']}:{row['path']}"
        try:
            blob = read_blob(git_dir(mirror, row["repo"]), row["commit"], row["path"])
            digest = hashlib.sha256(blob).hexdigest()
            if digest != row["sha256"]:
                raise ValueError(f"SHA-256 {digest[:12]}, selection says {row['sha256'][:12]}")
            if digest in seen:
                raise ValueError(f"same bytes as {seen[digest]}")
            seen[digest] = src
            transform = (row.get("transform") or "").strip()
            suffix = None
            if transform:
                if transform not in TRANSFORMS:
                    raise ValueError(f"unknown transform {transform!r}")
                blob, suffix = TRANSFORMS[transform](blob)
            width, height, fmt = _probe(blob, Path(row["path"]).suffix.lower())
            folder = out / row["folder"]
            folder.mkdir(parents=True, exist_ok=True)
            name = out_name(row["repo"], row["path"], suffix)
            _write_atomic(folder / name, blob)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the rest
            errors.append(f"{src}: {exc}")
            continue
        extra = {k: (v or "").strip() for k, v in row.items() if k not in (*COLUMNS, "transform")}
        manifests[row["folder"]].append(
            {
                "path": name,
                "label": row["label"],
                "generator": row["generator"],
                "width": str(width),
                "height": str(height),
                "format": fmt,
                "source": src,
                **extra,
            }
        )
    return errors


def write_manifests(out: Path, manifests: dict[str, list[dict[str, str]]]) -> None:
    for folder, entries in manifests.items():
        buf = io.StringIO()
        extra = sorted({k for e in entries for k in e} - set(MANIFEST_COLUMNS))
        w = csv.DictWriter(
            buf, (*MANIFEST_COLUMNS, *extra), delimiter="\t", lineterminator="\n", restval=""
        )
        w.writeheader()
        w.writerows(sorted(entries, key=lambda e: e["path"]))
        _write_atomic(out / folder / "MANIFEST.tsv", buf.getvalue().encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("selection", type=Path, nargs="+", help="selection TSV file(s)")
    ap.add_argument("--mirror", type=Path, default=Path("/work/.mirror"),
                    help="folder of fetched snapshots (default: /work/.mirror)")
    ap.add_argument("--out", type=Path, required=True, help="output folder, e.g. ../data/public")
    args = ap.parse_args(argv)
    failed = 0
    # One manifest per folder across all selections given: two lists may fill one folder.
    manifests: dict[str, list[dict[str, str]]] = defaultdict(list)
    for sel in args.selection:
        errors = rebuild(sel, args.mirror, args.out, manifests)
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        failed += len(errors)
        print(f"{sel}: done, {len(errors)} file(s) failed")
    write_manifests(args.out, manifests)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
