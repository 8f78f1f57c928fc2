"""scripts/data/rebuild.py: a committed selection list + repository snapshots -> the data
folder, byte for byte; an altered or missing file is reported and the rest still lands."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noisetrace.data.manifest import discover

ROOT = Path(__file__).resolve().parents[1]


def _load_rebuild():
    spec = importlib.util.spec_from_file_location("rebuild", ROOT / "scripts/data/rebuild.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _git(gdir: Path, *args: str, cwd: Path | None = None) -> str:
    who = {f"GIT_{r}_{k}": v for r in ("AUTHOR", "COMMITTER")
           for k, v in (("NAME", "t"), ("EMAIL", "t@t"))}  # fmt: skip
    env = {"GIT_DIR": str(gdir), "HOME": str(gdir), "PATH": os.environ["PATH"], **who}
    r = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env)
    return r.stdout.strip()


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 60, 3), np.uint8)).save(
        buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def mirror(tmp_path: Path) -> tuple[Path, str, dict[str, bytes]]:
    """A bare snapshot of ``owner/repo`` laid out as the session tool ``fetch`` leaves it."""
    work = tmp_path / "work"
    (work / "imgs").mkdir(parents=True)
    files = {"imgs/a.png": _png(0), "imgs/b.png": _png(1), "notes.txt": b"not an image"}
    for name, data in files.items():
        (work / name).write_bytes(data)
    gdir = tmp_path / "mirror" / "owner+repo" / "repo"
    subprocess.run(["git", "init", "-q", "--bare", str(gdir)], check=True)
    _git(gdir, "--work-tree", str(work), "add", "-A", cwd=work)
    _git(gdir, "--work-tree", str(work), "commit", "-q", "-m", "x", cwd=work)
    return tmp_path / "mirror", _git(gdir, "rev-parse", "HEAD"), files


def _selection(path: Path, commit: str, rows: list[tuple[str, str, str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["repo", "commit", "path", "folder", "label", "generator", "sha256", "group"])
        for p, label, digest, group in rows:
            w.writerow(["owner/repo", commit, p, "fam", label, f"gen {label}", digest, group])
    return path


def test_rebuild_copies_bytes_and_writes_a_manifest_the_loader_reads(mirror, tmp_path):
    root, commit, files = mirror
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    sel = _selection(tmp_path / "sel.tsv", commit, [
        ("imgs/a.png", "fake", sha["imgs/a.png"], "g1"),
        ("imgs/b.png", "real", sha["imgs/b.png"], ""),
    ])  # fmt: skip
    rb = _load_rebuild()
    assert rb.main([str(sel), "--mirror", str(root), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "fam"
    assert (out / "owner__repo__imgs__a.png").read_bytes() == files["imgs/a.png"]
    samples = {Path(s.path).name.split("__")[-1]: s for s in discover(out)}
    assert samples["a.png"].label == 1 and samples["a.png"].group == "g1"
    assert samples["b.png"].label == 0
    rows = list(csv.DictReader((out / "MANIFEST.tsv").open(), delimiter="\t"))
    assert rows[0]["width"] == "60" and rows[0]["height"] == "40" and rows[0]["format"] == "PNG"
    assert rows[0]["source"] == f"owner/repo@{commit}:imgs/a.png"


def test_altered_missing_or_unreadable_files_are_reported_the_rest_lands(mirror, tmp_path, capsys):
    root, commit, files = mirror
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    sel = _selection(tmp_path / "sel.tsv", commit, [
        ("imgs/a.png", "fake", "0" * 64, ""),  # the selection names other bytes
        ("imgs/gone.png", "fake", sha["imgs/b.png"], ""),  # not in the snapshot
        ("notes.txt", "real", sha["notes.txt"], ""),  # not an image
        ("imgs/b.png", "real", sha["imgs/b.png"], ""),
    ])  # fmt: skip
    rb = _load_rebuild()
    assert rb.main([str(sel), "--mirror", str(root), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "imgs/a.png: SHA-256" in err and "imgs/gone.png" in err and "notes.txt" in err
    out = tmp_path / "out" / "fam"
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.tsv", "owner__repo__imgs__b.png"]
    assert not list(out.glob("*.part"))


def test_a_repository_not_fetched_names_the_fetch_to_run(tmp_path):
    rb = _load_rebuild()
    with pytest.raises(FileNotFoundError, match="fetch github:owner/other"):
        rb.git_dir(tmp_path, "owner/other")
