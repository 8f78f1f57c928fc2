"""The registry of evaluation protocols: one class per protocol, registered by name.

A protocol is a class with a ``name``, a one-line ``description`` (``evaluate --help`` and the
docs list it) and the report ``title``, decorated with :func:`register_protocol`. Its base
class says how ``noisetrace evaluate`` runs it:

* :class:`ConditionProtocol` scores the ``--model`` detector on labelled data under test
  conditions it plans (JPEG quality, resolution, ...). All such protocols of one run share
  one pass over the data (:func:`noisetrace.evaluate.protocols.evaluate`), then each builds
  its report section from the scores.
* :class:`TrainingProtocol` trains models on splits of the labelled data (a ``train_fn``) and
  returns one report section.
* :class:`StandaloneProtocol` builds the whole report itself and runs alone (``lofo`` refits
  a feature-head recipe per held-out family).

The built-in protocols live in :mod:`noisetrace.evaluate.plugins`, loaded on first use.
This module imports nothing heavy, so ``evaluate --help`` can list the protocols cheaply.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from noisetrace.errors import NoisetraceError

if TYPE_CHECKING:
    from noisetrace.data.manifest import Sample
    from noisetrace.detector import Detector
    from noisetrace.evaluate.protocols import Condition, EvalOptions, ScoredRun

Section = dict[str, Any]  # {"protocol", "title", "description", "tables", "roc"}
Table = dict[str, Any]  # {"title", "columns", "rows"} (+ optional "data")

_BUILTINS = "noisetrace.evaluate.plugins"
_REGISTRY: dict[str, type[Protocol]] = {}


class Protocol:
    """Base of every protocol; subclass one of the three kinds below, not this."""

    name: ClassVar[str] = ""
    #: One line for ``evaluate --help`` and the docs.
    description: ClassVar[str] = ""
    #: Heading of its report section.
    title: ClassVar[str] = ""
    #: Paragraph under the heading (default: ``description``).
    details: ClassVar[str] = ""
    #: Reads labelled samples from ``--data`` / ``--split``.
    needs_data: ClassVar[bool] = True
    #: Scores the ``--model`` detector.
    needs_model: ClassVar[bool] = False
    #: Trains (or refits) models, which takes a while.
    needs_training: ClassVar[bool] = False

    @classmethod
    def add_arguments(cls, group: Any) -> None:
        """Options of its own on the ``evaluate`` command line: ``group`` is an argparse
        argument group; the values come back in ``args``."""

    def section(self, tables: Iterable[Table], roc: Iterable[str] = ()) -> Section:
        """A report section under this protocol's name and title."""
        return {"protocol": self.name, "title": self.title,
                "description": self.details or self.description, "tables": list(tables),
                "roc": list(dict.fromkeys(roc))}

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        """Sentences for the report summary; ``metrics``: sample-level metrics by condition."""
        return []


class ConditionProtocol(Protocol):
    """Scores the model under conditions; every such protocol of a run shares one pass."""

    needs_model = True
    #: First column of the default metrics tables: condition, quality or size.
    first_column: ClassVar[str] = "condition"
    #: Plan after the other protocols, from their conditions (``confound`` re-tests them).
    after_others: ClassVar[bool] = False

    def plan(self, opts: EvalOptions, others: Sequence[Condition]) -> list[Condition]:
        """The conditions this protocol reports on. ``others``: those the other protocols
        of the run planned (empty unless ``after_others``)."""
        raise NotImplementedError

    def extra_conditions(self, planned: Sequence[Condition]) -> list[Condition]:
        """Conditions to score as well, though not rows of its own (``confound``'s twins)."""
        return []

    def tables(self, run: ScoredRun, conditions: Sequence[Condition]) -> list[Table]:
        """Default: one metrics row per condition, and a frame-level table with videos."""
        from noisetrace.evaluate.protocols import metrics_table

        out = [metrics_table("Image/video level" if run.has_video else "Metrics", run.metrics,
                             conditions, self.first_column)]
        if run.has_video:
            out.append(metrics_table("Frame level", run.levels["frame"], conditions,
                                     self.first_column))
        return out

    def roc(self, conditions: Sequence[Condition]) -> list[str]:
        """Conditions drawn in its ROC figure."""
        return [c.name for c in conditions]

    def build(self, run: ScoredRun, conditions: Sequence[Condition]) -> Section:
        return self.section(self.tables(run, conditions), self.roc(conditions))


@dataclass
class TrainingInputs:
    """What a training protocol gets from ``noisetrace evaluate``."""

    samples: list[Sample]
    #: The samples of each ``--data`` argument, by name (cross-dataset domains).
    domains: dict[str, list[Sample]]
    #: ``train_fn(samples) -> Detector`` through the one training loop.
    train_fn: Callable[[list[Sample]], Detector]
    opts: EvalOptions
    #: The command line, for the options the protocol added (``add_arguments``).
    args: argparse.Namespace = field(default_factory=argparse.Namespace)


class TrainingProtocol(Protocol):
    """Trains a model per split with ``inputs.train_fn`` and returns one section."""

    needs_training = True

    def check(self, inputs: TrainingInputs) -> None:
        """Raise :class:`NoisetraceError` if the inputs cannot serve (before any training)."""

    def run(self, inputs: TrainingInputs) -> Section:
        raise NotImplementedError

    def summarize(self, section: Section, metrics: dict[str, dict[str, Any]]) -> list[str]:
        return [f"{section['title']}: see its table."]


class StandaloneProtocol(Protocol):
    """Builds the whole report itself; runs alone."""

    def report(self, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
        """The report dict (see :mod:`noisetrace.evaluate.report`) for this command line."""
        raise NotImplementedError


_KINDS = (ConditionProtocol, TrainingProtocol, StandaloneProtocol)


def _load_builtins() -> None:
    # Importing the built-ins registers them; a no-op after the first time (and while that
    # import is running, when it registers through here).
    importlib.import_module(_BUILTINS)


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: make ``cls`` available as ``--protocol cls.name``."""
    _load_builtins()  # built-ins first, so they keep their place in --help
    name = cls.name
    if not (isinstance(cls, type) and issubclass(cls, _KINDS)):
        raise TypeError(f"{cls!r} must subclass ConditionProtocol, TrainingProtocol or "
                        "StandaloneProtocol")
    if not name or "," in name or name != name.strip():
        raise ValueError(f"{cls.__name__}.name must be a non-empty name without commas or "
                         f"spaces around it (--protocol takes a comma-separated list); "
                         f"got {name!r}")
    if not cls.description or "\n" in cls.description:
        raise ValueError(f"{cls.__name__}.description must be one line (it is shown in "
                         "evaluate --help)")
    old = _REGISTRY.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"protocol {name!r} is already registered by "
                         f"{old.__module__}.{old.__qualname__}; pick another name or call "
                         "unregister_protocol first")
    _REGISTRY[name] = cls
    return cls


def unregister_protocol(name: str) -> None:
    """Remove a protocol (tests, or to replace a built-in)."""
    _REGISTRY.pop(name, None)


def protocol_names() -> list[str]:
    """Registered names, built-ins first, in registration order."""
    _load_builtins()
    return list(_REGISTRY)


def protocol_classes() -> list[type[Protocol]]:
    _load_builtins()
    return list(_REGISTRY.values())


def get_protocols(names: Iterable[str]) -> list[Protocol]:
    """One instance per distinct name, in order; unknown names raise an error listing the
    registered ones."""
    _load_builtins()
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in _REGISTRY]
    if unknown:
        raise NoisetraceError(
            f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(_REGISTRY)} "
            "(or register your own with @register_protocol, see docs/evaluate.md)")
    return [_REGISTRY[n]() for n in wanted]


def get_protocol(name: str) -> Protocol:
    """The protocol registered as ``name``; an unknown name raises an error listing the
    registered ones."""
    return get_protocols([name])[0]
