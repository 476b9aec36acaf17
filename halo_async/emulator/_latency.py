"""How long each phase of a query takes in the emulator."""

from __future__ import annotations

import dataclasses
import random
from typing import Literal

__all__ = ["Latency", "Phase"]

Phase = Literal["initialising", "queue_pickup", "execution", "page_upload", "immediate_overhead"]


@dataclasses.dataclass(frozen=True)
class Latency:
    """Simulated seconds per query phase, on top of the real SQLite time.

    The default is zero everywhere, so a query completes within a few event-loop iterations;
    :meth:`realistic` slows things down to roughly what Halo Cloud feels like, for demos.
    ``jitter`` is a fraction: each sample is scaled by a uniform factor in
    ``[1 - jitter, 1 + jitter]`` drawn from the emulator's seeded random generator.
    """

    initialising: float = 0.0
    """From the async POST until Halo Link has the query (initialising -> queued)."""
    queue_pickup: float = 0.0
    """From the front of the site's queue until execution starts."""
    execution: float = 0.0
    """Added to the real database time."""
    page_upload: float = 0.0
    """Per result page, from ``uploading`` to ``cached``."""
    immediate_overhead: float = 0.0
    """The round trip Cloud -> Link -> Cloud of an immediate query."""
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 0:
                raise ValueError(f"Latency.{field.name} must not be negative")
        if self.jitter > 1:
            raise ValueError("Latency.jitter is a fraction between 0 and 1")

    @classmethod
    def zero(cls) -> Latency:
        """No simulated latency at all (the default)."""
        return cls()

    @classmethod
    def realistic(cls) -> Latency:
        """Seconds-scale delays that make the async lifecycle visible in a demo."""
        return cls(
            initialising=0.3,
            queue_pickup=0.5,
            execution=0.8,
            page_upload=0.4,
            immediate_overhead=0.25,
            jitter=0.3,
        )

    @classmethod
    def named(cls, name: str) -> Latency:
        """The preset called ``zero`` or ``realistic``."""
        presets = {"zero": cls.zero, "realistic": cls.realistic}
        try:
            return presets[name]()
        except KeyError:
            raise ValueError(
                f"unknown latency preset {name!r}; use one of {sorted(presets)}"
            ) from None

    def sample(self, phase: Phase, rng: random.Random) -> float:
        """One draw for ``phase``; exactly zero when the phase has no latency."""
        base: float = getattr(self, phase)
        if base == 0 or self.jitter == 0:
            return base
        return base * rng.uniform(1 - self.jitter, 1 + self.jitter)
