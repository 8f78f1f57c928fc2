"""The built-in evaluation protocols, one registered class each (see :mod:`.registry`).

The work is done by the functions of :mod:`noisetrace.evaluate.protocols` (and
:mod:`noisetrace.heads.fit` for ``lofo``); they are imported inside the methods so that
listing the protocols (``evaluate --help``) imports neither torch nor numpy.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from noisetrace.errors import NoisetraceError
from noisetrace.evaluate.registry import (
    ConditionProtocol,
    Section,
    StandaloneProtocol,
    Table,
    TrainingInputs,
    TrainingProtocol,
    register_protocol,
)

if TYPE_CHECKING:
    from noisetrace.evaluate.protocols import Condition, EvalOptions, ScoredRun


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _auc_sentence(m: dict[str, Any]) -> str:
    lo, hi = m.get("auc_ci", [math.nan, math.nan])
    ci = "" if math.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]"
    return f"AUC {m['auc']:.3f}{ci}, accuracy {m['accuracy']:.3f}"


def _auc_list(section: Section, metrics: dict[str, dict[str, Any]]) -> str:
    return "; ".join(f"{n}: {metrics[n]['auc']:.3f}" for n in section["roc"]) + " (AUC)."


def _first_size(conditions: Sequence[Condition]) -> list[Condition]:
    # One ROC per JPEG condition (at its first size): a dozen curves do not read.
    return [c for c in conditions if c.size == conditions[0].size]


# -- scoring protocols -----------------------------------------------------------------------
@register_protocol
class Standard(ConditionProtocol):
    name = "standard"
    description = "the data as stored: metrics, and each generator's fakes against all reals"
    title = "Standard"
    details = "The data as stored."

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        from noisetrace.evaluate.protocols import Condition

        return [Condition()]

    def tables(self, run: ScoredRun, conditions: Sequence[Condition]) -> list[Table]:
        from noisetrace.evaluate.protocols import per_group_table

        return super().tables(run, conditions) + [
            per_group_table(run.scored, conditions[0], run.threshold, run.opts.group_by)]

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        return [f"As stored: {_auc_sentence(metrics[section['roc'][0]])}."]


@register_protocol
class Jpeg(ConditionProtocol):
    name = "jpeg"
    description = "uncompressed, then every file JPEG-compressed at each --qualities (DJIN)"
    title = "JPEG robustness"
    details = "Every file JPEG-compressed at each quality factor (DJIN Fig. 1 and Table 2)."
    first_column = "quality"

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        from noisetrace.evaluate.protocols import Condition

        return [Condition(q) for q in (None, *opts.qualities)]

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        return ["JPEG: " + _auc_list(section, metrics)]


@register_protocol
class Resolution(ConditionProtocol):
    name = "resolution"
    description = "views at each of --sizes: centre crop or resize (DJIN Table 2)"
    title = "Resolution"
    details = "Tested at 224, 512 and original size (DJIN Table 2)."
    first_column = "size"

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        from noisetrace.evaluate.protocols import Condition

        return [Condition(size=s) for s in opts.sizes]

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        return ["Resolution: " + _auc_list(section, metrics)]


@register_protocol
class Generators(ConditionProtocol):
    name = "generators"
    description = "DJIN Table 2: Real/Fake counts per generator for every JPEG quality and size"
    title = "Per-generator table"
    details = ("DJIN Table 2's form: predicted Real/Fake counts per generator for each JPEG "
               "condition, accuracy at each resolution.")

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        from noisetrace.evaluate.protocols import Condition

        return [Condition(q, s) for q in (None, *opts.qualities) for s in opts.sizes]

    def tables(self, run: ScoredRun, conditions: Sequence[Condition]) -> list[Table]:
        from noisetrace.evaluate.protocols import generator_table, per_group_table

        g = run.opts.group_by
        return [generator_table(run.scored, conditions, run.threshold, g),
                per_group_table(run.scored, conditions[0], run.threshold, g)]

    def roc(self, conditions: Sequence[Condition]) -> list[str]:
        return [c.name for c in _first_size(conditions)]


@register_protocol
class Republished(ConditionProtocol):
    name = "republished"
    description = ("matched JPEG 90 beside every file downscaled to 1080 px and JPEG-compressed "
                   "at each --qualities, as platforms republish photos")
    title = "Republished"
    details = ("Both classes with one history (lossless files JPEG 95 first), then the longer "
               "side scaled down to 1080 px and JPEG at each quality, as social platforms "
               "republish photos; beside matched JPEG 90 at full size. Downscaling erases most "
               "camera noise: watch the reals' false-positive rate.")

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        from noisetrace.evaluate.protocols import Condition

        return [Condition(90, matched=True),
                *(Condition(online=f"web{q}") for q in opts.qualities)]

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        return ["Republished: " + _auc_list(section, metrics)]


@register_protocol
class Online(ConditionProtocol):
    name = "online"
    description = ("matched JPEG 90 beside files as found online: republished as WebP at each "
                   "--qualities, screenshots at 75% and 125%")
    title = "As found online"
    details = ("Both classes with one history (lossless files JPEG 95 first), then: the longer "
               "side scaled down to 1080 px and WebP at each quality, as image CDNs serve "
               "pictures; a screenshot of the image shown at 75% (a large picture fitted to a "
               "window) and at 125% (a high-density display), bilinear, shared as JPEG 90. "
               "Non-integer resampling moves every pixel-level trace off its grid.")

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        from noisetrace.evaluate.protocols import Condition

        return [Condition(90, matched=True),
                *(Condition(online=f"webp{q}") for q in opts.qualities),
                Condition(online="shot75"), Condition(online="shot125")]

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        return ["As found online: " + _auc_list(section, metrics)]


@register_protocol
class Confound(ConditionProtocol):
    name = "confound"
    description = "every other condition again with both classes re-encoded alike"
    title = "Format confound"
    details = ("The same evaluation with both classes re-encoded identically (lossless files "
               "get a camera-like JPEG pass, then all files the same JPEG quality), beside the "
               "raw one. A large drop under matched formats means the detector leaned on file "
               "format or compression history.")
    after_others = True

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        from noisetrace.evaluate.protocols import Condition

        return list(others) or [Condition()]

    def extra_conditions(self, planned: Sequence[Condition]) -> list[Condition]:
        return [c.twin() for c in planned]

    def tables(self, run: ScoredRun, conditions: Sequence[Condition]) -> list[Table]:
        from noisetrace.evaluate.protocols import confound_table, metrics_table

        twins = list(dict.fromkeys(c.twin() for c in conditions))
        return [confound_table(run.metrics, conditions),
                metrics_table("Matched formats", run.metrics, twins)]

    def roc(self, conditions: Sequence[Condition]) -> list[str]:
        shown = _first_size(conditions)
        return [c.name for c in shown] + [c.twin().name for c in shown]

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        rows = section["tables"][0]["rows"]
        first = rows[0]
        worst = min(rows, key=lambda r: r[4] if r[4] is not None else math.inf)

        def f3(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        line = (f"Format confound: AUC {f3(first[2])} as stored vs {f3(first[3])} with both "
                f"classes re-encoded alike ({first[1]})")
        if worst is not first:
            line += f"; largest change {f3(worst[4])} ({worst[0]} vs {worst[1]})"
        drop = worst[4] if worst[4] is not None else 0.0
        return [line + (". A drop this large means part of the raw score came from file "
                        "format or compression history, not from the content's noise."
                        if drop < -0.05 else
                        ". Matched formats cost less than 0.05 AUC: the score does not "
                        "rest on file format.")]


# -- protocols that train --------------------------------------------------------------------
@register_protocol
class LeaveOneOut(TrainingProtocol):
    name = "loo"
    description = "trains without each manipulation in turn, tests on it (Xception Table 1)"
    title = "Leave one manipulation out"
    details = ("Xception paper Table 1: train on real data and all manipulations but one, "
               "test on the one left out and unseen reals.")

    @classmethod
    def add_arguments(cls, group: Any) -> None:
        group.add_argument("--loo-key", choices=("generator", "dataset"), default="generator",
                           help="what counts as one manipulation")

    def run(self, inputs: TrainingInputs) -> Section:
        from noisetrace.evaluate.protocols import leave_one_out

        return leave_one_out(inputs.samples, inputs.train_fn,
                             key=getattr(inputs.args, "loo_key", "generator"), opts=inputs.opts)


@register_protocol
class CrossDataset(TrainingProtocol):
    name = "crossdataset"
    description = "trains on each --data domain, tests on every domain (Xception Table 1)"
    title = "Cross-dataset"
    details = "Train on one dataset, test on the held-back split of each."

    def check(self, inputs: TrainingInputs) -> None:
        if len(inputs.domains) < 2:
            raise NoisetraceError("crossdataset needs two or more --data domains")

    def run(self, inputs: TrainingInputs) -> Section:
        from noisetrace.evaluate.protocols import cross_dataset

        return cross_dataset(inputs.domains, inputs.train_fn, opts=inputs.opts)


@register_protocol
class SequenceLength(TrainingProtocol):
    name = "seqlen"
    description = "clip accuracy as clips of --lengths successive frames grow (Xception Table 2)"
    title = "Sequence length"
    details = ("Xception paper Table 2: clip accuracy per test manipulation as the number of "
               "successive frames per clip grows.")

    @classmethod
    def add_arguments(cls, group: Any) -> None:
        group.add_argument("--lengths", type=_ints, default=(5, 10, 20, 40, 60),
                           help="clip lengths of the sequence-length sweep (default: "
                                "5,10,20,40,60)")

    def check(self, inputs: TrainingInputs) -> None:
        if not getattr(inputs.args, "videos", True):
            raise NoisetraceError("seqlen scores video clips: add --videos")

    def run(self, inputs: TrainingInputs) -> Section:
        from noisetrace.evaluate.protocols import sequence_length_sweep

        # A frame model: training does not depend on L, so train once and sweep the clip
        # length at test time.
        cache: dict[str, Any] = {}

        def once(samples: list, _length: int) -> Any:
            if "det" not in cache:
                cache["det"] = inputs.train_fn(samples)
            return cache["det"]

        lengths = getattr(inputs.args, "lengths", (5, 10, 20, 40, 60))
        return sequence_length_sweep(inputs.samples, once, lengths=lengths, opts=inputs.opts)


# -- protocols with a report of their own ----------------------------------------------------
@register_protocol
class LeaveOneFamilyOut(StandaloneProtocol):
    name = "lofo"
    description = "refits a feature-head model's recipe without each fake family (runs alone)"
    title = "Leave one family out"
    needs_data = False  # the recipe names its data; --data replaces it
    needs_training = True

    def report(self, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
        """Leave one fake family out with the recipe a feature-head model was fitted with
        (its card.json), or the head recipe given as --train-config; --data replaces its
        data."""
        import json

        from noisetrace.heads.fit import Features, HeadRecipe, leave_one_family_out, lofo_section
        from noisetrace.zoo import resolve

        if args.train_config:
            recipe = HeadRecipe.from_yaml(args.train_config, data=args.data)
        else:
            card = resolve(args.model) / "card.json"
            raw = json.loads(card.read_text()).get("recipe") if card.is_file() else None
            if not raw or "branches" not in raw:
                raise NoisetraceError(f"{args.model} records no head recipe; lofo refits heads "
                                      "on frozen features: give --train-config configs/*.yaml")
            recipe = HeadRecipe(**{**raw, **({"data": args.data} if args.data else {})})
        recipe.seed = args.seed
        feats = Features(recipe, recipe.corpus(), verbose=not args.quiet)
        rep = leave_one_family_out(recipe, feats, bootstrap=args.bootstrap,
                                   verbose=not args.quiet)
        fams = rep["families"]
        thr = float(sum(r["threshold"] for r in fams) / max(len(fams), 1))
        return {"model": {"name": f"{recipe.name} (refitted per held-out family)",
                          "arch": "fusion", "threshold": round(thr, 4), "calibration": {}},
                "options": {"recipe": rep["recipe"]}, "counts": {"samples": rep["n_samples"]},
                "unreadable": [], "conditions": {}, "metrics": {"sample": {}}, "roc": {},
                "sections": [lofo_section(rep)], "data": [str(d) for d in recipe.data],
                "summary": [f"{t}: mean AUC {v['mean_auc']:.3f}, min {v['min_auc']:.3f} "
                            f"({v['worst_family']})" for t, v in rep["summary"].items()]}
