"""Wall and CPU time of a block, and the median of repeated measurements."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from types import TracebackType

__all__ = ["Stopwatch", "median"]


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.wall`` and ``watch.cpu`` in seconds.

    ``cpu`` is this process's CPU time (all threads), which with the emulator in another
    process is the client's own work.
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._wall_start = 0.0
        self._cpu_start = 0.0

    def __repr__(self) -> str:
        return f"<Stopwatch wall={self.wall:.3f}s cpu={self.cpu:.3f}s>"

    def __enter__(self) -> Stopwatch:
        self._wall_start = time.perf_counter()
        self._cpu_start = time.process_time()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wall = time.perf_counter() - self._wall_start
        self.cpu = time.process_time() - self._cpu_start


def median(values: Sequence[float | None]) -> float | None:
    """The median of the measured values; None when none was measured."""
    measured = [value for value in values if value is not None]
    return statistics.median(measured) if measured else None
