"""Start-up stays light: the CLI and `--help` never import torch or other heavy modules.

Structural, not timed (timings live in benchmarks/startup.py): a fresh interpreter runs the
code path and reports which heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "torchvision", "onnxruntime", "onnx", "numpy", "sklearn", "scipy", "PIL",
         "matplotlib", "cv2", "av", "captum", "ray", "rich.progress")  # fmt: skip


def _heavy_after(code: str) -> list[str]:
    """Heavy modules imported by ``code`` in a fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_cli_pulls_in_no_torch():
    assert _heavy_after("import noisetrace.cli") == []


def test_importing_the_package_is_light_and_the_api_still_loads_lazily():
    assert _heavy_after("import noisetrace; noisetrace.InputError; noisetrace.__version__") == []
    assert "torch" in _heavy_after("import noisetrace; noisetrace.load_detector")


# explain and evaluate are missing: their packages' __init__ import torch / scikit-learn.
@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["scan", "--help"], ["models"], ["train", "--help"],
    ["prepare", "--help"], ["export", "--help"], ["serve", "--help"],
    ["pretrain-stego", "--help"],
])  # fmt: skip
def test_help_version_and_models_import_nothing_heavy(argv):
    code = f"""
        import contextlib, io
        from noisetrace.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main({argv!r})
            except SystemExit:
                pass
    """
    assert _heavy_after(code) == []


def test_subcommand_help_builds_only_that_parser():
    # `scan --help` must not import the modules of the other subcommands.
    code = """
        from noisetrace.cli import build_parser
        build_parser(["scan"])
        import sys
        assert not any(m in sys.modules for m in ("noisetrace.prepare", "noisetrace.export",
                       "noisetrace.evaluate.command", "noisetrace.train.loop")), "imported"
    """
    assert _heavy_after(code) == []
