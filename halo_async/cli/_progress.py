"""Live progress for queries and fan-outs, drawn by rich only on a terminal.

Off a terminal (a pipe, a CI log) nothing is drawn: the data on stdout and the summary stay
clean, and the counts are still kept for the summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from halo_async import models
from halo_async.fanout import FanOutEvent, FanOutEventKind, FanOutProgress

__all__ = ["FanOutMonitor", "QueryMonitor"]

# The order in which a query's stages are listed, as it moves through them.
_STAGES = ("submitted", "initialising", "queued", "executing", "uploading", "successful")


class _Monitor:
    """A rich progress display, started and stopped as a context manager."""

    _progress: Progress

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()


class FanOutMonitor(_Monitor):
    """Progress of one or more concurrent fan-outs, as one bar (only when ``enabled``, by
    default when ``console`` is a terminal).

    Each fan-out reports through its own :meth:`listener` (its counts are its own); the bar
    shows their sum: sites done of all, failures, rows, pages, and how many queries are in
    each stage right now.
    """

    def __init__(
        self,
        console: Console,
        total: int,
        *,
        description: str = "Sites",
        enabled: bool | None = None,
    ) -> None:
        self.console = console
        self.live = console.is_terminal if enabled is None else enabled
        self._latest: dict[str, FanOutProgress] = {}
        self._stages: dict[tuple[str, str], str] = {}
        self._total = total
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[rows]} rows, {task.fields[pages]} pages"),
            TextColumn("[dim]{task.fields[stages]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
            redirect_stdout=False,
        )
        self._task: TaskID = self._progress.add_task(
            description, total=total, failed=0, rows=0, pages=0, stages=""
        )

    @property
    def totals(self) -> FanOutProgress:
        """The counts summed over every fan-out so far."""
        latest = list(self._latest.values())
        return FanOutProgress(
            total=self._total,
            submitted=sum(p.submitted for p in latest),
            completed=sum(p.completed for p in latest),
            failed=sum(p.failed for p in latest),
            pages=sum(p.pages for p in latest),
            rows=sum(p.rows for p in latest),
        )

    def listener(self, name: str) -> Callable[[FanOutEvent], None]:
        """The ``on_event`` callback for the fan-out called ``name``."""

        def on_event(event: FanOutEvent) -> None:
            self._latest[name] = event.progress
            self._track_stage(name, event)
            totals = self.totals
            self._progress.update(
                self._task,
                completed=totals.done,
                failed=totals.failed,
                rows=totals.rows,
                pages=totals.pages,
                stages=self._stage_summary(),
            )

        return on_event

    def _track_stage(self, name: str, event: FanOutEvent) -> None:
        if event.query_id is None:
            return
        key = (name, event.query_id)
        if event.kind in (FanOutEventKind.COMPLETED, FanOutEventKind.FAILED):
            self._stages.pop(key, None)
        elif event.kind == FanOutEventKind.SUBMITTED:
            self._stages[key] = "submitted"
        elif event.kind == FanOutEventKind.STATUS and event.status is not None:
            self._stages[key] = event.status

    def _stage_summary(self) -> str:
        counts = Counter(self._stages.values())
        ordered = sorted(counts, key=lambda s: _STAGES.index(s) if s in _STAGES else len(_STAGES))
        return ", ".join(f"{counts[stage]} {stage}" for stage in ordered)


class QueryMonitor(_Monitor):
    """Progress of one query: its status, pages and rows so far (only when ``enabled``, by
    default when ``console`` is a terminal)."""

    def __init__(self, console: Console, description: str, *, enabled: bool | None = None) -> None:
        self._rows = 0
        self._pages = 0
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("[bold]{task.fields[status]}"),
            TextColumn("{task.fields[rows]} rows, {task.fields[pages]} pages"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not (console.is_terminal if enabled is None else enabled),
            redirect_stdout=False,
        )
        self._task = self._progress.add_task(
            description, total=None, status="submitting", rows=0, pages=0
        )

    def on_status(self, query: models.AsyncQuery | models.ImmediateQuery) -> None:
        """A new status of the query."""
        self._progress.update(self._task, status=str(query.status))

    def set_status(self, status: str) -> None:
        """A stage the API has no status for (e.g. resolving the site)."""
        self._progress.update(self._task, status=status)

    def on_rows(self, count: int) -> None:
        """A page of ``count`` rows arrived."""
        self._rows += count
        self._pages += 1
        self._progress.update(self._task, rows=self._rows, pages=self._pages)
