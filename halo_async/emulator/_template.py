"""Generate once, copy many: practice databases built once per dataset and copied per site.

Generating a Best Practice practice of 2,000 patients costs ~80 ms of Python; copying the
finished database costs ~1 ms of ``memcpy``. A :class:`TemplateCache` keeps each generated
catalogue as a serialised SQLite image (immutable ``bytes``, safe to share between threads)
and gives every site its own in-memory copy with :meth:`sqlite3.Connection.deserialize`.
The copy is generic: whatever tables, views and indexes a builder creates are in the image,
including tables added to :mod:`.dataset` later.

Builds run in the SQL worker threads, never on the event loop. Two sites asking for the same
template at once build it once: the second waits on that template's lock, not on a global one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Hashable

from halo_async.emulator import dataset

__all__ = ["Builder", "TemplateCache", "generate", "open_copy"]

Builder = Callable[[sqlite3.Connection], None]


def _connect() -> sqlite3.Connection:
    # Autocommit: each statement commits, so nonQuery changes persist at once. The SQL threads
    # share connections (one command at a time per site, under the database's lock).
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    # Collations are per connection, not part of the image: a copy needs them again.
    conn.create_collation(dataset.CASE_INSENSITIVE_COLLATION, dataset.compare_case_insensitive)
    return conn


def generate(build: Builder) -> sqlite3.Connection:
    """A new in-memory database filled by ``build``."""
    conn = _connect()
    try:
        build(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def open_copy(image: bytes) -> sqlite3.Connection:
    """A private, writable in-memory copy of a serialised database."""
    conn = _connect()
    try:
        conn.deserialize(image)
    except BaseException:
        conn.close()
        raise
    return conn


class TemplateCache:
    """Serialised databases by key; each built at most once, however many threads ask."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images: dict[Hashable, bytes] = {}
        self._building: dict[Hashable, threading.Lock] = {}
        # One build at a time: generation is pure Python, so two builds in two threads take
        # as long as one after the other, and each extra busy thread is one more contender
        # for the GIL the event loop needs.
        self._build_slot = threading.Lock()
        self.builds = 0
        """How many templates were generated (the rest of the copies came from the cache)."""

    def __len__(self) -> int:
        return len(self._images)

    @property
    def size(self) -> int:
        """Bytes held by the cached images."""
        return sum(len(image) for image in list(self._images.values()))

    def image(self, key: Hashable, build: Builder) -> bytes:
        """The image for ``key``, generating it with ``build`` the first time."""
        image = self._images.get(key)
        if image is not None:
            return image
        with self._lock:
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            image = self._images.get(key)
            if image is None:
                with self._build_slot:
                    conn = generate(build)
                    try:
                        image = conn.serialize()
                    finally:
                        conn.close()
                self._images[key] = image
                self.builds += 1
        with self._lock:
            self._building.pop(key, None)
        return image

    def copy(self, key: Hashable, build: Builder) -> sqlite3.Connection:
        """A site's own copy of the template for ``key``."""
        return open_copy(self.image(key, build))

    def clear(self) -> None:
        """Forget every image (sites already copied keep their copies)."""
        with self._lock:
            self._images.clear()
