"""Which model a row of the evaluation is about: :class:`ModelKey`, a small typed record.

Every row, summary entry, paired difference and table line of the evaluation names its model
by a label string (``row["model"]``), the same string that ``evaluation.json``, ``tables.md``,
the report and the MLflow metric names carry. The labels are unchanged; code that needs to
know what a label means (is it a baseline? whose self-trained model?) asks a :class:`ModelKey`
instead of matching string prefixes:

==============================  ===============  =============  =====================
label                           kind             category       name
==============================  ===============  =============  =====================
``pretrained``                  ``pretrained``   –              –
``selftrained-<category>``      ``selftrained``  ``<category>`` –
``selftrained``                 ``selftrained``  –              –
``distilled``                   ``distilled``    –              –
``baseline: <name>``            ``baseline``     –              ``<name>`` (e.g. sphere)
==============================  ===============  =============  =====================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["BASELINE_PREFIX", "KINDS", "Kind", "ModelKey"]

Kind = Literal["baseline", "pretrained", "selftrained", "distilled"]
KINDS: tuple[str, ...] = get_args(Kind)
BASELINE_PREFIX = "baseline: "
_SELFTRAINED_PREFIX = "selftrained-"


@dataclass(frozen=True)
class ModelKey:
    """A model of the evaluation: ``kind``; ``category``, the collection a self-trained model
    was trained on; ``name``, which baseline (``sphere``, ``category medoid``, ``oracle NN``).

    :attr:`label` is the string the rows, tables and reports carry; :meth:`parse` reads it back.
    """

    kind: Kind
    category: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r} (one of {', '.join(KINDS)})")
        if (self.kind == "baseline") != bool(self.name):
            raise ValueError("a baseline, and only a baseline, has a name")
        if self.category is not None and (self.kind != "selftrained" or not self.category):
            raise ValueError("only a self-trained model has a category (a non-empty one)")

    @classmethod
    def baseline(cls, name: str) -> ModelKey:
        return cls("baseline", name=name)

    @classmethod
    def selftrained(cls, category: str | None = None) -> ModelKey:
        return cls("selftrained", category=category)

    @property
    def label(self) -> str:
        """The row label: ``pretrained``, ``selftrained-bird``, ``baseline: sphere``, ..."""
        if self.kind == "baseline":
            return f"{BASELINE_PREFIX}{self.name}"
        if self.kind == "selftrained" and self.category is not None:
            return f"{_SELFTRAINED_PREFIX}{self.category}"
        return self.kind

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"

    @classmethod
    def parse(cls, label: str) -> ModelKey:
        """The key of a row label; ``ValueError`` for a string that is no model label."""
        if label.startswith(BASELINE_PREFIX):
            return cls.baseline(label.removeprefix(BASELINE_PREFIX))
        if label in KINDS:
            return cls(label)  # type: ignore[arg-type]
        if label.startswith(_SELFTRAINED_PREFIX):
            return cls.selftrained(label.removeprefix(_SELFTRAINED_PREFIX))
        raise ValueError(f"not a model label: {label!r}")

    def __str__(self) -> str:
        return self.label
