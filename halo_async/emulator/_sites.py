"""The emulated practices: site specs, their deterministic generation and the live site records."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

__all__ = [
    "PMS_NAMES",
    "PMS_TYPES",
    "DatabaseFactory",
    "Site",
    "SiteDatabase",
    "SiteSpec",
    "build_sites",
    "generate_specs",
]

PMS_TYPES = ("BestPractice", "Zedmed", "D4w")
# pmsType -> the practiceManagementName spelling used in query strings and deprecated fields.
PMS_NAMES = {"BestPractice": "Best Practice", "Zedmed": "Zedmed", "D4w": "D4w"}
AVAILABILITIES = ("online", "offline", "unreachable")
SITE_STATUSES = ("initialising", "active", "removed", "uninstalled")

_PMS_WEIGHTS = (0.8, 0.12, 0.08)
_BACKUP_RATE = 0.1
_SUBURBS = (
    "Paddington", "Bondi Junction", "Fitzroy", "Carlton", "New Farm", "Fremantle", "Glenelg",
    "Sandy Bay", "Parramatta", "Toowong", "Subiaco", "Unley", "Manly", "Brunswick", "Chermside",
    "Newtown", "Geelong West", "Kingston", "Bulimba", "Norwood", "Hawthorn", "Coogee", "Ashgrove",
    "Mount Lawley", "Belconnen", "Cronulla", "Kew", "Indooroopilly", "Scarborough", "Prospect",
)  # fmt: skip
_KINDS = {
    "BestPractice": ("Family Medical", "Medical Centre", "General Practice", "Health Clinic"),
    "Zedmed": ("Medical Group", "Doctors", "Specialist Rooms", "Clinic"),
    "D4w": ("Dental", "Dental Care", "Family Dentists", "Smile Studio"),
}
_PMS_VERSIONS = {
    "BestPractice": ("1.11.1.884", "1.12.0.940", "1.13.1.1200"),
    "Zedmed": ("36.1.0", "36.2.1", "37.0.3"),
    "D4w": ("9.5.2", "9.6.3", "10.0.1"),
}
_HALO_LINK_VERSIONS = ("25.1210.7669.0", "26.128.8251.0", "26.202.8289.0", "26.619.10213.0")
_PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class SiteDatabase(Protocol):
    """What a site needs from its practice database (``database.PracticeDatabase``).

    A database may also offer ``interrupt()``, callable from any thread, to stop its running
    command; the emulator calls it when a query's deadline passes and when it closes.
    """

    @property
    def catalogues(self) -> Sequence[Any]:
        """The site's catalogues, each with ``name`` and ``is_default``."""
        ...

    def execute(
        self,
        text: str,
        *,
        catalogue: str | None = None,
        execution_mode: str = "reader",
        command_type: str = "text",
        parameters: Sequence[Mapping[str, Any]] = (),
    ) -> Any:
        """Run one command; returns an ``ExecutionResult``."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


class DatabaseFactory(Protocol):
    """Builds a site's database; must be cheap (generation is lazy)."""

    def __call__(self, *, pms_type: str, seed: int, patients: int) -> SiteDatabase:
        """The database for one site."""
        ...


@dataclasses.dataclass(frozen=True)
class SiteSpec:
    """An explicitly configured emulated site; anything left as None is derived from the seed."""

    pms_type: str = "BestPractice"
    """``BestPractice``, ``Zedmed`` or ``D4w``."""
    availability: str = "online"
    """``online``, ``offline`` or ``unreachable``."""
    authoritative: bool = True
    paired: bool = True
    patients: int = 2000
    pms_site_id: str | None = None
    """The PMS's own id (Bp Site ID, Zedmed Database ID); two specs may share one."""
    practice_name: str | None = None
    status: str = "active"
    id: str | None = None
    """The Halo GUID."""
    pairing_code: str | None = None
    """Best Practice only: the code pair-site expects."""

    def __post_init__(self) -> None:
        if self.pms_type not in PMS_TYPES:
            raise ValueError(f"pms_type must be one of {PMS_TYPES}, got {self.pms_type!r}")
        if self.availability not in AVAILABILITIES:
            raise ValueError(f"availability must be one of {AVAILABILITIES}")
        if self.status not in SITE_STATUSES:
            raise ValueError(f"status must be one of {SITE_STATUSES}")
        if self.patients < 0:
            raise ValueError("patients must not be negative")


@dataclasses.dataclass(eq=False)
class Site:
    """One emulated Halo Link site, as the state machine sees it."""

    id: str
    pms_type: str
    pms_site_id: str
    authoritative: bool
    availability: str
    status: str
    paired: bool
    pairing_code: str | None
    practice_name: str
    practice_management_version: str
    halo_link_version: str
    created_at: datetime
    enriched_at: datetime
    patients: int
    database_seed: int
    database: SiteDatabase = dataclasses.field(repr=False)
    availability_changed_at: datetime
    """When the site last changed availability: the last heartbeat of an offline site."""
    online: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        if self.availability == "online":
            self.online.set()

    @property
    def pms_name(self) -> str:
        """The ``practiceManagementName`` spelling of the PMS type."""
        return PMS_NAMES[self.pms_type]

    def set_availability(self, availability: str, now: datetime) -> None:
        """Change availability; queued queries wait while the site is not online."""
        if availability not in AVAILABILITIES:
            raise ValueError(f"availability must be one of {AVAILABILITIES}")
        if availability != self.availability:
            self.availability = availability
            self.availability_changed_at = now
        if availability == "online":
            self.online.set()
        else:
            self.online.clear()

    def last_heartbeat(self, now: datetime) -> datetime:
        """Halo Link beats every 60 s while online; an unreachable site went silent > 2 min ago."""
        if self.availability == "online":
            phase = int(self.database_seed % 60)
            elapsed = int(now.timestamp()) % 60
            return now.replace(microsecond=0) - timedelta(seconds=(elapsed - phase) % 60)
        if self.availability == "unreachable":
            return min(self.availability_changed_at, now - timedelta(minutes=2, seconds=5))
        return self.availability_changed_at


def generate_specs(count: int, seed: int) -> list[SiteSpec]:
    """A deterministic mix of sites: mostly Best Practice, some sharing a PMS id with a backup."""
    if count < 0:
        raise ValueError("the number of sites must not be negative")
    rng = random.Random(f"halo-emulator-sites:{seed}")
    specs: list[SiteSpec] = []
    for index in range(count):
        previous = specs[-1] if specs else None
        if previous is not None and previous.authoritative and rng.random() < _BACKUP_RATE:
            # The same practice seen through a second Link install: a backup server that
            # answers 403 to queries, as non-authoritative sites do.
            specs.append(
                dataclasses.replace(
                    previous, authoritative=False, id=None, practice_name=None, pairing_code=None
                )
            )
            continue
        pms_type = rng.choices(PMS_TYPES, weights=_PMS_WEIGHTS)[0]
        specs.append(SiteSpec(pms_type=pms_type, pms_site_id=f"{rng.randrange(10, 99)}{index:04d}"))
    return specs


def build_sites(
    specs: Sequence[SiteSpec], *, seed: int, now: datetime, database_factory: DatabaseFactory
) -> list[Site]:
    """Site records for ``specs``; ids, names and versions derived from ``seed`` where unset."""
    sites: list[Site] = []
    for index, spec in enumerate(specs):
        rng = random.Random(f"halo-emulator-site:{seed}:{index}")
        site_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        database_seed = rng.getrandbits(32)
        suburb = rng.choice(_SUBURBS)
        name = spec.practice_name or f"{suburb} {rng.choice(_KINDS[spec.pms_type])}"
        pms_site_id = spec.pms_site_id or f"{rng.randrange(10, 99)}{index:04d}"
        code = spec.pairing_code or "".join(rng.choices(_PAIRING_ALPHABET, k=6))
        created_at = now.replace(microsecond=0) - timedelta(days=rng.randrange(30, 900))
        sites.append(
            Site(
                id=spec.id or site_id,
                pms_type=spec.pms_type,
                pms_site_id=pms_site_id,
                authoritative=spec.authoritative,
                availability=spec.availability,
                status=spec.status,
                paired=spec.paired,
                pairing_code=code if spec.pms_type == "BestPractice" else None,
                practice_name=name,
                practice_management_version=rng.choice(_PMS_VERSIONS[spec.pms_type]),
                halo_link_version=rng.choice(_HALO_LINK_VERSIONS),
                created_at=created_at,
                enriched_at=now.replace(microsecond=0) - timedelta(hours=rng.randrange(1, 48)),
                patients=spec.patients,
                database_seed=database_seed,
                database=database_factory(
                    pms_type=spec.pms_type, seed=database_seed, patients=spec.patients
                ),
                availability_changed_at=now - timedelta(minutes=rng.randrange(3, 600)),
            )
        )
    return sites
