"""Figures, their targets, the printed table and the JSON file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BenchmarkResult",
    "Figure",
    "Target",
    "format_comparison",
    "format_table",
    "report_json",
    "write_json",
]

Comparison = Literal["<=", "<", ">=", ">"]


@dataclasses.dataclass(frozen=True)
class Target:
    """A bound a figure must meet, e.g. ``Target("<=", 1.15)``."""

    comparison: Comparison
    bound: float

    def met_by(self, value: float | None) -> bool:
        """Whether ``value`` meets the bound (a missing value never does)."""
        if value is None or math.isnan(value):
            return False
        match self.comparison:
            case "<=":
                return value <= self.bound
            case "<":
                return value < self.bound
            case ">=":
                return value >= self.bound
            case ">":
                return value > self.bound

    def __str__(self) -> str:
        return f"{self.comparison} {self.bound:g}"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One reported number: a ratio with a target, or a supporting measurement without one.

    ``value`` is None when it could not be measured (``note`` says why).
    """

    name: str
    value: float | None
    unit: str = "x"
    target: Target | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """True or False against the target; None for a figure without one."""
        return None if self.target is None else self.target.met_by(self.value)

    def formatted_value(self) -> str:
        """The value as the table shows it."""
        if self.value is None:
            return "n/a"
        if self.unit == "x":
            return f"{self.value:.3f}x"
        if abs(self.value) >= 1000:
            return f"{self.value:,.0f} {self.unit}"
        return f"{self.value:.3g} {self.unit}"

    def as_json(self) -> dict[str, Any]:
        """The figure as a JSON object."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": str(self.target) if self.target is not None else None,
            "passed": self.passed,
            "note": self.note,
        }


@dataclasses.dataclass
class BenchmarkResult:
    """What one benchmark measured: its figures and the raw numbers behind them."""

    name: str
    title: str
    figures: list[Figure]
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: list[str] = dataclasses.field(default_factory=list)
    """Lines printed under the table (request counts, sizes, the settings used)."""

    @property
    def failed(self) -> list[Figure]:
        """The figures that missed their target."""
        return [figure for figure in self.figures if figure.passed is False]

    def as_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return {
            "title": self.title,
            "figures": [figure.as_json() for figure in self.figures],
            "summary": self.summary,
            "details": self.details,
        }


def format_table(results: Sequence[BenchmarkResult]) -> str:
    """A plain-text table: benchmark, figure, value, target, pass/fail."""
    rows = [("benchmark", "figure", "value", "target", "result")]
    for result in results:
        for figure in result.figures:
            verdict = {True: "PASS", False: "FAIL", None: ""}[figure.passed]
            target = str(figure.target) + (figure.unit if figure.unit in ("x", "%") else "")
            rows.append(
                (
                    result.name,
                    figure.name,
                    figure.formatted_value(),
                    target if figure.target is not None else "",
                    verdict,
                )
            )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    notes = [
        f"  {result.name} / {figure.name}: {figure.note}"
        for result in results
        for figure in result.figures
        if figure.note
    ]
    if notes:
        lines += ["", "notes:", *notes]
    for result in results:
        if result.summary:
            lines += [
                "",
                f"{result.name}: {result.title}",
                *(f"  {line}" for line in result.summary),
            ]
    return "\n".join(line.rstrip() for line in lines)


def report_json(results: Sequence[BenchmarkResult], options: dict[str, Any]) -> dict[str, Any]:
    """The whole run as one JSON object, with the machine it ran on."""
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "options": options,
        "passed": all(not result.failed for result in results),
        "benchmarks": {result.name: result.as_json() for result in results},
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def format_comparison(results: Sequence[BenchmarkResult], old: dict[str, Any]) -> str:
    """Each figure of this run against the same figure (benchmark and name) in ``old``, a
    document :func:`report_json` wrote earlier; figures only one side has are listed so."""
    previous = {
        (benchmark, figure["name"]): figure
        for benchmark, result in old.get("benchmarks", {}).items()
        for figure in result.get("figures", [])
    }
    current = {
        (result.name, figure.name): figure for result in results for figure in result.figures
    }
    rows = [("benchmark", "figure", "old", "new", "change")]
    for key, figure in current.items():
        before = previous.get(key)
        if before is None:
            rows.append((*key, "missing", figure.formatted_value(), ""))
            continue
        old_value = before.get("value")
        rows.append(
            (*key, _old_value(before), figure.formatted_value(), _change(old_value, figure))
        )
    gone = [key for key in previous if key not in current and key[0] in {r.name for r in results}]
    for key in gone:
        rows.append((*key, _old_value(previous[key]), "missing", ""))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    skipped = sorted({b for b, _ in previous} - {r.name for r in results})
    if skipped:
        lines.append(f"not run this time: {', '.join(skipped)}")
    when = old.get("generated_at")
    return f"compared with {when or 'an undated run'}:\n" + "\n".join(lines)


def _old_value(figure: dict[str, Any]) -> str:
    value = figure.get("value")
    if not isinstance(value, int | float):
        return "n/a"
    return Figure(
        str(figure.get("name")), float(value), unit=str(figure.get("unit", "x"))
    ).formatted_value()


def _change(old_value: Any, figure: Figure) -> str:
    """The relative change, with a word saying whether it is towards the target."""
    if not isinstance(old_value, int | float) or figure.value is None:
        return "n/a"
    if old_value == 0:
        return "from 0"
    change = (figure.value - old_value) / abs(old_value)
    text = f"{change:+.1%}"
    if figure.target is not None and change != 0:
        better = (change > 0) == (figure.target.comparison in (">=", ">"))
        text += " better" if better else " worse"
    return text
