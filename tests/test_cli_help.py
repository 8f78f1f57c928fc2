"""The `noisetrace` command itself: one way of registering subcommands, help with defaults and
examples, --version, `models` without torch, install hints that survive rich markup, and
optional requirements checked before any work."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from noisetrace import __version__, cli


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_command_is_listed_once_and_resolves():
    names = [c.name for c in cli.COMMANDS]
    assert len(names) == len(set(names))
    subs = _subparsers(cli.build_parser())
    assert list(subs) == names
    for c in cli.COMMANDS:  # module:function, no hidden registration elsewhere
        module, _, func = c.arguments.partition(":")
        assert callable(getattr(__import__(module, fromlist=[func]), func)), c
    top = cli.build_parser([]).format_help()
    assert all(n in top for n in names) and "examples:" in top


@pytest.mark.parametrize("name", [c.name for c in cli.COMMANDS])
def test_help_has_an_example_and_help_with_defaults_for_every_option(name):
    p = _subparsers(cli.build_parser([name]))[name]
    text = p.format_help()
    assert "examples:" in text and f"noisetrace {name}" in text.split("examples:")[1]
    for a in p._actions:
        if not a.option_strings or a.help == argparse.SUPPRESS:
            continue
        assert a.help, f"{name} {a.option_strings[0]} has no help text"
        fmt = cli.HelpFormatter(name)._get_help_string(a) or ""
        if a.nargs == 0 and isinstance(a.default, bool):  # a flag: "(default: True)" misleads
            assert "(default:" not in fmt, f"{name} {a.option_strings[0]} shows a flag default"
        elif a.default not in (None, False, argparse.SUPPRESS) and not a.required:
            assert "default" in fmt.lower(), f"{name} {a.option_strings[0]} hides its default"


def _documented_default(p: argparse.ArgumentParser, dest: str) -> str:
    a = next(a for a in p._actions if a.dest == dest)
    return _flat(a.help or "").split("default: ")[1].split(")")[0]


def test_train_help_states_trainconfig_defaults():
    from noisetrace.train.loop import TrainConfig

    p = _subparsers(cli.build_parser(["train"]))["train"]
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for dest in ("epochs", "batch_size", "lr", "seed", "patch", "name", "arch", "out", "device"):
        assert _documented_default(p, dest) == str(fields[dest]), dest


def test_pretrain_stego_help_states_stegoconfig_defaults():
    from noisetrace.train.stego import StegoConfig

    p = _subparsers(cli.build_parser(["pretrain-stego"]))["pretrain-stego"]
    for f in dataclasses.fields(StegoConfig):
        a = next((a for a in p._actions if a.dest == f.name and a.option_strings), None)
        if a is None or f.name in ("resume", "covers"):
            continue
        want = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        want = "all" if want is None else want
        if isinstance(want, list):
            want = ",".join(map(str, want))
        assert _documented_default(p, f.name) == str(want), f.name


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"noisetrace {__version__}"


# -- models ------------------------------------------------------------------------------------
def test_architecture_table_names_every_registered_model():
    from noisetrace import models

    assert sorted(cli.architecture_catalog()) == models.list_models()


def test_models_lists_purpose_input_threshold_validation_and_card_without_torch():
    code = ("import sys; from noisetrace.cli import main; main(['models']); "
            "assert 'torch' not in sys.modules, 'torch imported'")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    default = out.split("\n  faces")[0]
    thr = json.loads((Path(cli._ZOO_DIR) / "default" / "config.json").read_text())["threshold"]
    assert "whole image" in default and f"threshold: {thr:.3f}" in default
    assert "leave-one-family-out, JPEG 90: mean over families AUC" in default
    assert str(Path(cli._ZOO_DIR) / "default" / "MODEL_CARD.md") in default
    assert "AI-generated" in default  # its purpose, from card.json
    fast = out.split("\n  fast")[1].split("\narchitectures")[0]
    assert "threshold: 0.500" in fast and "matched formats AUC 0.901 (n 93)" in fast
    assert "faces (found, cropped" in out
    for name in cli.architecture_catalog():
        assert f"\n  {name} " in out


def test_models_reads_unknown_and_missing_fields_defensively(tmp_path):
    (tmp_path / "fused").mkdir()
    (tmp_path / "fused" / "config.json").write_text(json.dumps(
        {"name": "fused", "input": {"image": "default", "face": "faces"}, "threshold": "x",
         "members": ["default", "faces"]}))  # fmt: skip
    (tmp_path / "fused" / "card.json").write_text("{not json")
    (tmp_path / "fused" / "MODEL_CARD.md").write_text("# Card\n\nWhole images and faces.\n")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("[]")
    (tmp_path / "weights-only").mkdir()  # no config.json: not a bundled model
    lines = "\n".join(cli.describe_bundled(tmp_path))
    assert "fused" in lines and "Whole images and faces." in lines
    assert "threshold: n/a" in lines and "card: none" in lines and "weights-only" not in lines


# -- install hints and requirements ------------------------------------------------------------
@pytest.fixture()
def missing(monkeypatch):
    """``missing(*modules)``: make the CLI's requirement check see those modules as absent."""

    def hide(*modules: str) -> None:
        real = cli._importable
        monkeypatch.setattr(cli, "_importable", lambda m: m not in modules and real(m))

    return hide


def test_install_hint_keeps_the_extra_in_brackets(missing, capsys):
    missing("uvicorn")
    assert cli.main(["serve"]) == 2
    err = _flat(capsys.readouterr().err)
    assert "needs uvicorn" in err and "pip install 'noisetrace[serve]'" in err


def test_serve_fallback_hint_is_escaped(monkeypatch, capsys):
    from noisetrace.serve import command

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import fails inside _serve
    args = argparse.Namespace(workers=1, queue=1, port=1, max_upload_mb=1, timeout=1)
    assert command._serve(args) == 2
    assert "pip install 'noisetrace[serve]'" in _flat(capsys.readouterr().err)


def test_evaluate_checks_matplotlib_before_scoring(missing, monkeypatch, capsys, tmp_path):
    from noisetrace.evaluate import command

    monkeypatch.setattr(command, "run", lambda args: pytest.fail("scored without matplotlib"))
    missing("matplotlib")
    rc = cli.main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert rc == 2 and "pip install 'noisetrace[explain]'" in _flat(capsys.readouterr().err)


@pytest.mark.parametrize(("argv", "module", "extra"), [
    (["export", "--out", "x"], "onnx", "noisetrace[onnx]"),
    (["explain", "a.jpg", "--method", "ig"], "captum", "noisetrace[explain]"),
    (["explain", "a.jpg", "--traces"], "matplotlib", "noisetrace[explain]"),
    (["pretrain-stego"], "conseal", "noisetrace[stego]"),
    (["scan", "a.jpg", "--engine", "ray"], "ray", "noisetrace[ray]"),
    (["prepare", "d", "--faces", "opencv"], "cv2", "noisetrace[faces]"),
])  # fmt: skip
def test_optional_requirements_are_named_before_any_work(missing, capsys, argv, module, extra):
    missing(module)
    assert cli.main(argv) == 2
    assert f"pip install '{extra}'" in _flat(capsys.readouterr().err)


# -- export ------------------------------------------------------------------------------------
def test_failed_export_leaves_no_folder_and_success_replaces_stale_graphs(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    import noisetrace.runtime as runtime_mod  # checkpoint.save_checkpoint exports through it
    from noisetrace.export import export

    real = runtime_mod.export_onnx

    def broken(model, directory):
        (Path(directory) / "features.onnx").write_bytes(b"half")
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(runtime_mod, "export_onnx", broken)
    out = tmp_path / "models" / "mine"
    with pytest.raises(RuntimeError):
        export(str(tiny_model_dir), out)
    assert not out.exists() and list(out.parent.iterdir()) == []

    monkeypatch.setattr(runtime_mod, "export_onnx", real)
    out.mkdir()
    (out / "forward.onnx").write_bytes(b"stale")  # from other weights
    (out / "notes.txt").write_text("mine")
    files = export(str(tiny_model_dir), out)
    assert {f.name for f in files} == {"features.onnx", "head.onnx"}
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["mine"]  # no temporary folder left
    from noisetrace.detector import Detector

    Detector.load(out, device="cpu", backend="onnx")  # graphs verified against config.json


def test_package_is_typed_and_classified():
    import importlib.resources
    import tomllib

    assert (importlib.resources.files("noisetrace") / "py.typed").is_file()
    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert "Typing :: Typed" in meta["project"]["classifiers"]
    assert "py.typed" in meta["tool"]["setuptools"]["package-data"]["noisetrace"]


def test_explain_shows_bracketed_names_verbatim(tiny_model_dir, tmp_path, capsys):
    missing_file = tmp_path / "photo[serve].jpg"
    cli.main(["explain", str(missing_file), "--model", str(tiny_model_dir),
              "--out", str(tmp_path / "ev")])  # fmt: skip
    assert "photo[serve].jpg" in capsys.readouterr().err
