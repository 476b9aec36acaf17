"""The emulator in its own process, so that a benchmark's process spends its CPU on the client.

Zero-latency runs use the emulator's own command (``python -m halo_async.emulator``); a run
that needs a per-page upload latency uses :mod:`benchmarks._launcher`, which serves the same
emulator with a :class:`~halo_async.emulator.Latency` the command line cannot express. Both
print the base URL and the API key on stdout, which is all the benchmark reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from halo_async.emulator import Emulator

__all__ = ["EmulatorProcess", "EmulatorStartError", "PlannedSite", "plan_sites"]

_REPO = Path(__file__).resolve().parents[1]
_SERVING = re.compile(r"serving (\d+) sites at (http://\S+)")
_KEY = re.compile(r"API key: (\S+)")
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


class EmulatorStartError(RuntimeError):
    """The emulator process did not come up; the message carries the tail of its stderr."""


@dataclasses.dataclass(frozen=True)
class PlannedSite:
    """One emulated site, as the emulator with the same count and seed will serve it."""

    id: str
    pms_type: str
    queryable: bool
    """Paired, authoritative, online and active: a query on it runs."""


async def plan_sites(count: int, seed: int) -> list[PlannedSite]:
    """The sites an emulator started with ``--sites count --seed seed`` serves.

    Site ids and kinds derive only from the count and the seed, so an emulator built (not
    started) in this process lists the very sites the emulator process serves.
    """
    replica = Emulator(sites=count, seed=seed)
    try:
        return [
            PlannedSite(
                id=site.id,
                pms_type=site.pms_type,
                queryable=site.paired
                and site.authoritative
                and site.availability == "online"
                and site.status == "active",
            )
            for site in replica.sites
        ]
    finally:
        await replica.close()


async def best_practice_sites(needed: int, seed: int) -> tuple[int, list[str]]:
    """The smallest ``--sites`` count (roughly) that yields ``needed`` queryable Best
    Practice sites, and those sites' ids: one SQL text then runs on every one of them."""
    count = max(needed, 2)
    while True:
        sites = [
            site.id
            for site in await plan_sites(count, seed)
            if site.queryable and site.pms_type == "BestPractice"
        ]
        if len(sites) >= needed:
            return count, sites[:needed]
        count = count * 3 // 2 + 1


class EmulatorProcess:
    """``async with EmulatorProcess(sites=200) as emu:`` serves an emulator on 127.0.0.1 in a
    child process until the block ends (on errors and cancellation too).

    ``page_upload`` (seconds per result page) above zero starts :mod:`benchmarks._launcher`
    instead of ``python -m halo_async.emulator``.
    """

    def __init__(
        self,
        *,
        sites: int,
        seed: int = 1,
        page_size: int = 1_000_000,
        page_upload: float = 0.0,
    ) -> None:
        self.sites = sites
        self.seed = seed
        self.page_size = page_size
        self.page_upload = page_upload
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None
        self._base_url: str | None = None
        self._api_key: str | None = None

    def __repr__(self) -> str:
        where = self._base_url or "not running"
        return f"<EmulatorProcess sites={self.sites} seed={self.seed} {where}>"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:port`` of the running emulator."""
        if self._base_url is None:
            raise RuntimeError("the emulator process is not running")
        return self._base_url

    @property
    def api_key(self) -> str:
        """The key the emulator accepts (never printed by the benchmarks)."""
        if self._api_key is None:
            raise RuntimeError("the emulator process is not running")
        return self._api_key

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def cpu_seconds(self) -> float | None:
        """CPU seconds the emulator process has used so far (None where /proc is absent).

        Compared with a run's wall time it says whether the emulator, not the client, was
        the bottleneck.
        """
        if self._process is None:
            return None
        try:
            stat = Path(f"/proc/{self._process.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def command(self) -> list[str]:
        """The command line of the child process."""
        common = [
            "--port", "0",
            "--sites", str(self.sites),
            "--seed", str(self.seed),
            "--page-size", str(self.page_size),
        ]  # fmt: skip
        if self.page_upload > 0:
            launcher = [sys.executable, "-m", "benchmarks._launcher"]
            return [*launcher, *common, "--page-upload", repr(self.page_upload)]
        return [sys.executable, "-m", "halo_async.emulator", *common, "--latency", "zero"]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the child and wait until it prints where it serves."""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        # The launcher is a module of this checkout, whatever the caller's working directory.
        path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        self._process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            cwd=_REPO,
            env=env,
        )
        try:
            await asyncio.wait_for(self._read_banner(), _START_TIMEOUT_S)
        except BaseException:
            await self.stop()
            raise

    async def _read_banner(self) -> None:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        while self._base_url is None or self._api_key is None:
            line = (await process.stdout.readline()).decode(errors="replace")
            if not line:
                await process.wait()
                raise EmulatorStartError(
                    f"the emulator exited ({process.returncode}) before serving: "
                    f"{self._stderr_tail()}"
                )
            if serving := _SERVING.search(line):
                self._base_url = serving.group(2)
            elif key := _KEY.search(line):
                self._api_key = key.group(1)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:].strip()

    async def stop(self) -> None:
        """Stop the child: SIGTERM, then SIGKILL if it does not exit within 10 s."""
        process, self._process = self._process, None
        self._base_url = self._api_key = None
        try:
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
