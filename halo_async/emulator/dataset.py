"""Deterministic synthetic practice data for the emulator's SQLite databases.

Everything here is generated from a seed with :class:`random.Random`, so the same seed always
yields the same rows, byte for byte.

* **Best Practice** follows the public picture of Bp Premier's ``BPSPatients`` database
  (REFERENCE §10.1): UPPERCASE ``dbo`` tables, mixed-case ``BPS_*`` views, appointment times
  in seconds from midnight and lengths in seconds, large provider ids, trailing spaces in some
  text columns. Tables the public sources do not describe (``USERGROUPS``, ``DAYSAWAY``) and
  extra columns (``PATIENTS.EMAIL``, ``USERS.GROUPID``) are **invented** to back the views.
* **Zedmed** (Firebird) has no public schema. The two catalogues and every table below are
  **invented** for the emulator and labelled so: ``ZedmedClinical`` (default) and
  ``ZedmedAccounts``.
* **D4W** (Dental4Windows) has no public schema either: ``D4W`` is an **invented** minimal
  dental schema.

Names are common Australian first names and surnames, addresses use real suburb/state/postcode
combinations, Medicare numbers carry a valid check digit, mobiles are ``04xx xxx xxx`` and
e-mail addresses use the reserved ``example.*`` domains. No row describes a real person.

Datetimes are stored as ISO text ``YYYY-MM-DDTHH:MM:SS`` (dates at midnight): exactly what the
API hands integrators, so rows need no conversion on the way out, text comparison orders them
correctly, and SQLite's own date functions still read them.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import random
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from halo_async.emulator._system_tables import add_firebird_system_tables, add_information_schema

__all__ = [
    "BEST_PRACTICE_CATALOGUE",
    "CASE_INSENSITIVE_COLLATION",
    "D4W_CATALOGUE",
    "ZEDMED_ACCOUNTS_CATALOGUE",
    "ZEDMED_CLINICAL_CATALOGUE",
    "DatasetSpec",
    "add_site_rows",
    "build_best_practice",
    "build_d4w",
    "build_zedmed_accounts",
    "build_zedmed_clinical",
    "compare_case_insensitive",
    "is_valid_ihi",
    "is_valid_medicare_number",
    "is_valid_provider_number",
    "luhn_check_digit",
    "medicare_check_digit",
    "provider_number_check_character",
]

BEST_PRACTICE_CATALOGUE = "Patients"
ZEDMED_CLINICAL_CATALOGUE = "ZedmedClinical"
ZEDMED_ACCOUNTS_CATALOGUE = "ZedmedAccounts"
D4W_CATALOGUE = "D4W"

#: SQL Server's default collation is case-insensitive and ignores trailing spaces in ``=``;
#: text columns of the SQL Server-like schemas use this collation to behave the same.
CASE_INSENSITIVE_COLLATION = "HALO_CI"

# Seconds from midnight, the Best Practice convention.
_DAY_START = 8 * 3600
_DAY_END = 17 * 3600


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What to generate: the seed, how many patients, and the date appointments centre on."""

    seed: int
    patients: int
    today: datetime.date
    #: Appointments are spread over ``today - window_days`` .. ``today + window_days``.
    window_days: int = 28

    def rng(self, stream: str) -> random.Random:
        """An independent generator per table, so adding rows to one leaves the others alone."""
        # A str seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
        return random.Random(f"{self.seed}:{stream}")


# --------------------------------------------------------------------------------------------
# Check digits


def medicare_check_digit(first_eight: str) -> int:
    """The Medicare card check digit (9th digit) for the first eight digits."""
    if len(first_eight) != 8 or not first_eight.isdigit():
        raise ValueError("a Medicare number starts with eight digits")
    weights = (1, 3, 7, 9, 1, 3, 7, 9)
    return sum(int(d) * w for d, w in zip(first_eight, weights, strict=True)) % 10


def is_valid_medicare_number(number: str) -> bool:
    """True for a 10 or 11 digit Medicare number starting 2-6 with a correct check digit."""
    digits = number.replace(" ", "")
    if len(digits) not in (10, 11) or not digits.isdigit() or digits[0] not in "23456":
        return False
    return medicare_check_digit(digits[:8]) == int(digits[8]) and digits[9] != "0"


def luhn_check_digit(payload: str) -> int:
    """The Luhn check digit for a string of digits (used by IHI and HPI-I numbers)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def is_valid_ihi(number: str) -> bool:
    """True for a 16 digit Individual Healthcare Identifier (prefix 800360) with a Luhn digit."""
    return (
        len(number) == 16
        and number.isdigit()
        and number.startswith("800360")
        and luhn_check_digit(number[:15]) == int(number[15])
    )


_PLV_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUVWXY"
_PROVIDER_CHECK_CHARACTERS = "YXWTLKJHFBA"


def provider_number_check_character(stem: str, location: str) -> str:
    """The check character of a Medicare provider number (6 digit stem + location character)."""
    weights = (3, 5, 8, 4, 2, 1)
    total = sum(int(d) * w for d, w in zip(stem, weights, strict=True))
    total += _PLV_CHARACTERS.index(location) * 6
    return _PROVIDER_CHECK_CHARACTERS[total % 11]


def is_valid_provider_number(number: str) -> bool:
    """True for an 8 character Medicare provider number with a correct check character."""
    if len(number) != 8 or not number[:6].isdigit() or number[6] not in _PLV_CHARACTERS:
        return False
    return provider_number_check_character(number[:6], number[6]) == number[7]


def _weighted_sum(digits: str, weights: Sequence[int]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


def _luhn_digit_sum(digits: str, double_last: bool) -> int:
    """Luhn contribution of ``digits`` when the last one sits at a doubled (or not) position."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if (i % 2 == 0) == double_last else 1)
        total += d - 9 if d > 9 else d
    return total


_MEDICARE_HALF_SUMS = tuple(_weighted_sum(f"{n:04d}", (1, 3, 7, 9)) for n in range(10_000))
# In a 15 digit IHI payload the last digit is doubled; the chunks alternate parity.
_LUHN_CHUNK_ODD = tuple(_luhn_digit_sum(f"{n:03d}", True) for n in range(1000))
_LUHN_CHUNK_EVEN = tuple(_luhn_digit_sum(f"{n:03d}", False) for n in range(1000))
_IHI_PREFIX_SUM = _luhn_digit_sum("800360", False)


def compare_case_insensitive(a: str, b: str) -> int:
    """SQL Server's default comparison: case-insensitive, trailing spaces ignored."""
    fa = a.rstrip(" ").casefold()
    fb = b.rstrip(" ").casefold()
    return (fa > fb) - (fa < fb)


# --------------------------------------------------------------------------------------------
# Vocabulary

_FEMALE_NAMES = (
    "Olivia", "Charlotte", "Amelia", "Isla", "Mia", "Ava", "Grace", "Chloe", "Sophie", "Emily",
    "Ella", "Zoe", "Lily", "Harper", "Ruby", "Matilda", "Evie", "Sienna", "Jessica", "Sarah",
    "Emma", "Hannah", "Georgia", "Lucy", "Madison", "Kate", "Rebecca", "Michelle", "Jennifer",
    "Lisa", "Karen", "Susan", "Margaret", "Patricia", "Helen", "Deborah", "Julie", "Nicole",
    "Priya", "Mei", "Thi", "Aaliyah", "Fatima", "Sofia", "Maria", "Anh", "Jasmine", "Tahlia",
)  # fmt: skip
_MALE_NAMES = (
    "Oliver", "Noah", "Jack", "William", "Leo", "Lucas", "Thomas", "Henry", "Charlie", "James",
    "Liam", "Ethan", "Cooper", "Harrison", "Samuel", "Lachlan", "Mason", "Hunter", "Riley",
    "Daniel", "Matthew", "Joshua", "Benjamin", "Ryan", "Michael", "David", "Andrew", "Peter",
    "John", "Robert", "Mark", "Paul", "Stephen", "Craig", "Scott", "Bruce", "Kevin", "Graham",
    "Raj", "Wei", "Minh", "Mohammed", "Ahmed", "Luca", "Nikolaos", "Arjun", "Tane", "Jayden",
)  # fmt: skip
_SURNAMES = (
    "Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Johnson", "White", "Martin",
    "Anderson", "Thompson", "Nguyen", "Thomas", "Walker", "Harris", "Lee", "Ryan", "Robinson",
    "Kelly", "King", "Davis", "Wright", "Evans", "Roberts", "Green", "Hall", "Wood", "Jackson",
    "Clarke", "Patel", "Khan", "Lewis", "James", "Phillips", "Mitchell", "Campbell", "Young",
    "Allen", "Scott", "Baker", "Adams", "Nelson", "Hill", "Hughes", "Cooper", "Turner", "Edwards",
    "Murphy", "O'Brien", "O'Connor", "McDonald", "MacKenzie", "Tran", "Le", "Pham", "Wang",
    "Zhang", "Chen", "Liu", "Singh", "Kaur", "Sharma", "Papadopoulos", "Russo", "Rossi",
    "Nikolaidis", "Kowalski", "Novak", "Ali", "Hassan", "Ibrahim", "Murray", "Morgan", "Reid",
    "Stewart", "Ross", "Graham", "Fraser", "Hamilton", "Watson", "Bell", "Ward", "Cox", "Gray",
    "Marshall", "Hunt", "Kennedy", "Burke", "Doyle", "Quinn", "Fitzgerald", "Brennan", "Walsh",
    "Van der Berg", "De Silva", "Fernando", "Tanaka", "Kim", "Park", "Da Costa", "Smith-Jones",
)  # fmt: skip
# Real suburb / state / postcode combinations.
_SUBURBS = (
    ("Bondi", "NSW", "2026"), ("Parramatta", "NSW", "2150"), ("Newtown", "NSW", "2042"),
    ("Manly", "NSW", "2095"), ("Chatswood", "NSW", "2067"), ("Penrith", "NSW", "2750"),
    ("Wollongong", "NSW", "2500"), ("Newcastle", "NSW", "2300"), ("Dubbo", "NSW", "2830"),
    ("Orange", "NSW", "2800"), ("Fitzroy", "VIC", "3065"), ("St Kilda", "VIC", "3182"),
    ("Richmond", "VIC", "3121"), ("Geelong", "VIC", "3220"), ("Ballarat", "VIC", "3350"),
    ("Bendigo", "VIC", "3550"), ("Box Hill", "VIC", "3128"), ("Frankston", "VIC", "3199"),
    ("Fortitude Valley", "QLD", "4006"), ("Toowong", "QLD", "4066"), ("Southport", "QLD", "4215"),
    ("Townsville", "QLD", "4810"), ("Cairns", "QLD", "4870"), ("Toowoomba", "QLD", "4350"),
    ("Glenelg", "SA", "5045"), ("Norwood", "SA", "5067"), ("Mount Gambier", "SA", "5290"),
    ("Fremantle", "WA", "6160"), ("Subiaco", "WA", "6008"), ("Joondalup", "WA", "6027"),
    ("Bunbury", "WA", "6230"), ("Sandy Bay", "TAS", "7005"), ("Launceston", "TAS", "7250"),
    ("Darwin", "NT", "0800"), ("Alice Springs", "NT", "0870"), ("Braddon", "ACT", "2612"),
    ("Belconnen", "ACT", "2617"),
)  # fmt: skip
_AREA_CODES = {"NSW": "02", "ACT": "02", "VIC": "03", "TAS": "03", "QLD": "07"}
_STREETS = (
    "George", "King", "Queen", "Elizabeth", "Victoria", "Church", "High", "Station", "Park",
    "Railway", "Main", "Bridge", "Albert", "William", "Market", "Forest", "Hill", "Beach",
    "Ocean", "Wattle", "Banksia", "Acacia", "Jacaranda", "Kurrajong", "Bottlebrush", "Gum Tree",
)  # fmt: skip
_STREET_TYPES = ("St", "Rd", "Ave", "Pde", "Cres", "Dr", "Ct", "Pl", "Lane", "Tce", "Hwy")
_HEALTH_FUNDS = ("", "", "Medibank", "Bupa", "HCF", "nib", "HBF", "AHM", "Teachers Health", "GMHBA")
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_REASONS = (
    "", "", "", "Review results", "Script renewal", "Cough", "Immunisation", "Skin check",
    "Follow up", "Chronic disease plan", "Medical certificate", "Back pain", "Sore throat",
    "Mental health plan", "Blood pressure check", "Antenatal visit", "Referral",
)  # fmt: skip

_TITLES = ((1, "Mr"), (2, "Mrs"), (3, "Miss"), (4, "Ms"), (5, "Dr"), (6, "Master"), (7, "Prof"))
_SEXES = ((1, "Male"), (2, "Female"), (3, "Intersex/Indeterminate"), (4, "Not stated"))
_ETHNICITIES = (
    (0, "Not stated"), (1, "Aboriginal"), (2, "Torres Strait Islander"),
    (3, "Aboriginal and Torres Strait Islander"), (4, "Neither"),
)  # fmt: skip
_PENSIONS = ((0, ""), (1, "Age Pension"), (2, "Health Care Card"), (3, "Pensioner Concession"))
_PATIENT_STATUSES = ((1, "Active"), (2, "Inactive"), (3, "Deceased"))
#: APPOINTMENTCODE -> the status text of BPS_Appointments (DM's list).
_APPOINTMENT_STATUSES = (
    (1, "Booked"), (2, "Waiting"), (3, "With doctor"), (4, "At billing"), (5, "Invoiced"),
    (6, "Completed"), (7, "Paid"),
)  # fmt: skip
#: (code, description, default length in seconds): lengths are multiples of 300 or 900.
_APPOINTMENT_TYPES = (
    (1, "Standard appointment", 900), (2, "Long appointment", 1800),
    (3, "Short appointment", 600), (4, "New patient", 1800), (5, "Telehealth", 900),
    (6, "Procedure", 2700), (7, "Immunisation", 600), (8, "Health assessment", 3600),
)  # fmt: skip
_USER_GROUPS = ((1, "Principal doctor"), (2, "Doctor"), (3, "Nurse"), (4, "Receptionist"))


def _midnight(day: datetime.date) -> str:
    return f"{day.isoformat()}T00:00:00"


def _stamp(day: datetime.date, seconds: int) -> str:
    return f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _pick(rng: random.Random, items: Sequence[Any]) -> Any:
    return items[int(rng.random() * len(items))]


_MAX_AGE_DAYS = int(95 * 365.25) + 1


@functools.lru_cache(maxsize=8)
def _past_day_texts(today: datetime.date) -> tuple[str, ...]:
    """Midnight texts of the days before ``today``: index 0 is yesterday."""
    last = today.toordinal() - 1
    return tuple(_midnight(datetime.date.fromordinal(last - age)) for age in range(_MAX_AGE_DAYS))


class _People:
    """Fast generation of Australian-looking people; one instance per table stream.

    The 200k-patient sites must generate in seconds, so the hot paths avoid date arithmetic
    and repeated string work: date texts and e-mail local parts are computed once and looked up.
    """

    def __init__(self, rng: random.Random, today: datetime.date) -> None:
        self.rng = rng
        self.random = rng.random
        self.day_texts = _past_day_texts(today)
        self._email_locals: dict[tuple[str, str], str] = {}

    def sex_and_first_name(self) -> tuple[int, str]:
        r = self.random()
        if r < 0.49:
            return 1, _MALE_NAMES[int(self.random() * len(_MALE_NAMES))]
        if r < 0.995:
            return 2, _FEMALE_NAMES[int(self.random() * len(_FEMALE_NAMES))]
        return (3 if r < 0.997 else 4), _pick(self.rng, _FEMALE_NAMES + _MALE_NAMES)

    def surname(self) -> str:
        return _SURNAMES[int(self.random() * len(_SURNAMES))]

    def street_address(self) -> str:
        r = self.random
        number = int(r() * 180) + 1
        unit = f"{int(r() * 30) + 1}/" if r() < 0.18 else ""
        street = _STREETS[int(r() * len(_STREETS))]
        kind = _STREET_TYPES[int(r() * len(_STREET_TYPES))]
        return f"{unit}{number} {street} {kind}"

    def suburb(self) -> tuple[str, str, str]:
        return _SUBURBS[int(self.random() * len(_SUBURBS))]

    def mobile(self) -> str:
        n = int(self.random() * 100_000_000)
        return f"04{n // 1_000_000:02d} {n // 1000 % 1000:03d} {n % 1000:03d}"

    def landline(self, state: str) -> str:
        n = int(self.random() * 100_000_000)
        return f"{_AREA_CODES.get(state, '08')} {n // 10_000:04d} {n % 10_000:04d}"

    def medicare(self) -> tuple[str, str]:
        """A 10 digit Medicare number (8 digits, check digit, issue number) and the IRN."""
        r = self.random
        high = int(r() * 5000) + 2000
        low = int(r() * 10_000)
        # Both halves carry the weights 1,3,7,9, so one table serves both.
        check = (_MEDICARE_HALF_SUMS[high] + _MEDICARE_HALF_SUMS[low]) % 10
        issue = int(r() * 9) + 1
        return f"{high}{low:04d}{check}{issue}", _IRNS[int(r() * 5)]

    def ihi(self) -> str:
        n = int(self.random() * 1_000_000_000)
        # 800360 + nine digits: Luhn sums of three-digit chunks, by position parity.
        top, middle, bottom = n // 1_000_000, n // 1000 % 1000, n % 1000
        total = _IHI_PREFIX_SUM + _LUHN_CHUNK_ODD[top] + _LUHN_CHUNK_EVEN[middle]
        total += _LUHN_CHUNK_ODD[bottom]
        return f"800360{n:09d}{(10 - total % 10) % 10}"

    def provider_number(self) -> str:
        stem = f"{int(self.random() * 900_000) + 100_000}"
        location = _PLV_CHARACTERS[int(self.random() * 20) + 10]
        return f"{stem}{location}{provider_number_check_character(stem, location)}"

    def email(self, first: str, surname: str) -> str:
        local = self._email_locals.get((first, surname))
        if local is None:
            local = f"{first}.{surname}".lower().replace("'", "").replace(" ", "")
            self._email_locals[first, surname] = local
        r = self.random
        return f"{local}{int(r() * 100)}@{_EMAIL_DOMAINS[int(r() * len(_EMAIL_DOMAINS))]}"

    def age_days(self) -> int:
        """Days since birth, skewed towards adults as a GP's list is; indexes ``day_texts``."""
        return int((self.random() ** 0.8) * (_MAX_AGE_DAYS - 1))


_IRNS = ("1", "2", "3", "4", "5")


def _register_collation(conn: sqlite3.Connection) -> None:
    conn.create_collation(CASE_INSENSITIVE_COLLATION, compare_case_insensitive)


def _working_days(spec: DatasetSpec, *, saturdays: bool) -> list[datetime.date]:
    start = spec.today - datetime.timedelta(days=spec.window_days)
    days = []
    for offset in range(2 * spec.window_days + 1):
        day = start + datetime.timedelta(days=offset)
        if day.weekday() < 5 or (saturdays and day.weekday() == 5):
            days.append(day)
    return days


def _status_for(day: datetime.date, today: datetime.date, rng: random.Random) -> int:
    if day > today:
        return 1
    if day < today:
        return (5, 6, 7, 7, 7)[int(rng.random() * 5)]
    return (1, 1, 2, 3, 4, 6, 7)[int(rng.random() * 7)]


def _run_script(
    conn: sqlite3.Connection,
    fill: Callable[[sqlite3.Connection], None],
    indexes: Sequence[str] = (),
) -> None:
    """Fill a fresh database in one transaction: one commit is what makes 200k rows fast.

    Indexes come after the rows: one sort is much cheaper than 200k B-tree insertions.
    """
    conn.execute("BEGIN")
    try:
        fill(conn)
        for statement in indexes:
            conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def add_site_rows(conn: sqlite3.Connection, catalogue: str, site: DatasetSpec) -> None:
    """Make a copy of a shared template one site's own: its practice rows, from ``site``.

    Sites of one emulator share a few generated datasets (generating one costs ~100x copying
    it); what names and describes the practice itself (Best Practice's ``LOCATIONS`` and
    ``PRACTICE``) is the site's own: the rows generating with the site's seed would give.
    Catalogues with no practice rows are left as generated.
    """
    fill = _SITE_ROWS.get(catalogue)
    if fill is not None:
        _run_script(conn, lambda c: fill(c, site))


# --------------------------------------------------------------------------------------------
# Best Practice

_CI = f"COLLATE {CASE_INSENSITIVE_COLLATION}"
# The indexed name columns of the big tables hold no trailing spaces, so SQLite's own
# case-insensitive collation is exact for them, and keeps 200k-row inserts and sorts in C.
_NOCASE = "COLLATE NOCASE"

_BP_SCHEMA = f"""
CREATE TABLE TITLES (TITLECODE INTEGER PRIMARY KEY, TITLE VARCHAR(20) {_CI});
CREATE TABLE SEX (SEXCODE INTEGER PRIMARY KEY, SEX VARCHAR(30) {_CI});
CREATE TABLE ETHNICITY (ETHNICCODE INTEGER PRIMARY KEY, ETHNICITY VARCHAR(50) {_CI});
CREATE TABLE PENSIONS (PENSIONCODE INTEGER PRIMARY KEY, PENSIONTYPE VARCHAR(50) {_CI});
CREATE TABLE PATIENTSTATUS (PATIENTSTATUS INTEGER PRIMARY KEY, STATUSTEXT VARCHAR(20) {_CI});
CREATE TABLE LOCATIONS (LOCATIONID INTEGER PRIMARY KEY, LOCATIONNAME VARCHAR(100) {_CI});
CREATE TABLE ROOMS (ROOMID INTEGER PRIMARY KEY, ROOMNAME VARCHAR(50) {_CI},
  LOCATIONID INTEGER);
CREATE TABLE USERGROUPS (GROUPID INTEGER PRIMARY KEY, GROUPNAME VARCHAR(50) {_CI});
CREATE TABLE USERS (
  USERID INTEGER PRIMARY KEY, RECORDSTATUS INTEGER NOT NULL DEFAULT 1,
  USERSTATUS INTEGER NOT NULL DEFAULT 1, LOCATIONID INTEGER, TITLECODE INTEGER,
  APPOINTMENTS INTEGER NOT NULL DEFAULT 0, GROUPID INTEGER,
  SURNAME VARCHAR(100) {_CI}, FIRSTNAME VARCHAR(30) {_CI}, PROVIDERNO VARCHAR(8) {_CI},
  PRESCRIBERNO VARCHAR(7) {_CI}, HPII VARCHAR(16) {_CI}, EMAIL VARCHAR(250) {_CI});
CREATE TABLE PATIENTS (
  INTERNALID INTEGER PRIMARY KEY, EXTERNALID VARCHAR(12) {_CI},
  RECORDSTATUS INTEGER NOT NULL DEFAULT 1, PATIENTSTATUS INTEGER NOT NULL DEFAULT 1,
  TITLECODE INTEGER, SEXCODE INTEGER, ETHNICCODE INTEGER, PENSIONCODE INTEGER, DVACODE INTEGER,
  HEADOFFAMILYID INTEGER, CONSENTSMSREMINDER INTEGER, USERID INTEGER,
  FIRSTNAME VARCHAR(40) {_NOCASE}, SURNAME VARCHAR(40) {_NOCASE},
  MIDDLENAME VARCHAR(30) {_CI},
  PREFERREDNAME VARCHAR(30) {_CI}, ADDRESS1 VARCHAR(40) {_CI}, ADDRESS2 VARCHAR(40) {_CI},
  CITY VARCHAR(40) {_CI}, POSTCODE VARCHAR(4) {_CI}, POSTALADDRESS VARCHAR(40) {_CI},
  POSTALCITY VARCHAR(40) {_CI}, POSTALPOSTCODE VARCHAR(4) {_CI}, DOB DATETIME,
  HOMEPHONE VARCHAR(14) {_CI}, WORKPHONE VARCHAR(14) {_CI}, MOBILEPHONE VARCHAR(14) {_CI},
  MEDICARENO VARCHAR(13) {_CI}, MEDICARELINENO VARCHAR(1) {_CI},
  MEDICAREEXPIRY VARCHAR(10) {_CI}, PENSIONNO VARCHAR(14) {_CI}, DVANO VARCHAR(14) {_CI},
  SAFETYNETNO VARCHAR(14) {_CI}, PENSIONSTART DATETIME, PENSIONEXPIRY DATETIME,
  RECORDNO VARCHAR(10) {_CI}, IHI VARCHAR(16) {_CI}, HEALTHFUNDNAME VARCHAR(100) {_CI},
  EMAIL VARCHAR(250) {_CI}, CREATED DATETIME NOT NULL, UPDATED DATETIME);
CREATE TABLE APPOINTMENTTYPES (APPOINTMENTCODE INTEGER PRIMARY KEY,
  DESCRIPTION VARCHAR(50) {_CI}, APPOINTMENTLENGTH INTEGER);
CREATE TABLE APPOINTMENTCODES (APPOINTMENTCODE INTEGER PRIMARY KEY,
  DESCRIPTION VARCHAR(20) {_CI});
CREATE TABLE APPOINTMENTS (
  RECORDID INTEGER PRIMARY KEY, INTERNALID INTEGER NOT NULL, USERID INTEGER NOT NULL,
  LOCATIONID INTEGER, RECORDSTATUS INTEGER NOT NULL DEFAULT 1, APPOINTMENTDATE DATETIME NOT NULL,
  APPOINTMENTTIME INTEGER NOT NULL, APPOINTMENTLENGTH INTEGER NOT NULL,
  APPOINTMENTCODE INTEGER NOT NULL DEFAULT 1, APPOINTMENTTYPE INTEGER, URGENT INTEGER DEFAULT 0,
  ARRIVALTIME INTEGER DEFAULT 0, CONSULTATIONTIME INTEGER DEFAULT 0, ROOMID INTEGER,
  BOOKEDBY INTEGER, REASON VARCHAR(500) {_CI}, COMMENT VARCHAR(500) {_CI},
  VIDEOURL VARCHAR(2000) {_CI}, CREATED DATETIME);
CREATE TABLE CANCELLEDAPPOINTMENTS (APPOINTMENTID INTEGER NOT NULL, CANCELLEDDATE DATETIME,
  REASON VARCHAR(200) {_CI});
CREATE TABLE SESSIONS (USERID INTEGER NOT NULL, LOCATIONID INTEGER, DAYOFWEEK INTEGER NOT NULL,
  STARTTIME INTEGER NOT NULL, ENDTIME INTEGER NOT NULL, LENGTH INTEGER NOT NULL,
  STARTDATE DATETIME, ENDDATE DATETIME);
CREATE TABLE DAYSAWAY (RECORDID INTEGER PRIMARY KEY, USERID INTEGER NOT NULL,
  STARTDATE DATETIME NOT NULL, FINISHDATE DATETIME NOT NULL, REASON VARCHAR(100) {_CI},
  RECORDSTATUS INTEGER NOT NULL DEFAULT 1);

-- Computed text columns carry the case-insensitive collation, as SQL Server's would.
CREATE VIEW BPS_Patients AS
SELECT P.INTERNALID AS InternalID, P.EXTERNALID AS ExternalID, P.RECORDSTATUS AS RecordStatus,
  ST.STATUSTEXT AS StatusText, T.TITLE AS Title, P.FIRSTNAME AS Firstname,
  P.MIDDLENAME AS Middlename, P.SURNAME AS Surname, P.PREFERREDNAME AS Preferredname,
  P.ADDRESS1 AS Address1, P.ADDRESS2 AS Address2, P.CITY AS City, P.POSTCODE AS Postcode,
  P.POSTALADDRESS AS PostalAddress, P.POSTALCITY AS PostalCity,
  P.POSTALPOSTCODE AS PostalPostcode, P.DOB AS DOB, S.SEX AS Sex, E.ETHNICITY AS Ethnicity,
  P.HOMEPHONE AS HomePhone, P.WORKPHONE AS WorkPhone, P.MOBILEPHONE AS MobilePhone,
  P.EMAIL AS Email, P.MEDICARENO AS MedicareNo, P.MEDICARELINENO AS MedicareLineNo,
  P.MEDICAREEXPIRY AS MedicareExpiry, PN.PENSIONTYPE AS PensionType, P.PENSIONNO AS PensionNo,
  P.PENSIONEXPIRY AS PensionExpiry, P.DVANO AS DVANo, P.SAFETYNETNO AS SafetyNetNo,
  P.RECORDNO AS RecordNo, P.IHI AS IHI, P.HEALTHFUNDNAME AS HealthFundName,
  P.USERID AS UsualDoctorID,
  TRIM(COALESCE(UT.TITLE || ' ', '') || TRIM(U.FIRSTNAME) || ' ' || TRIM(U.SURNAME))
    {_CI} AS UsualDoctor,
  P.CONSENTSMSREMINDER AS ConsentSMSReminder, P.CREATED AS Created, P.UPDATED AS Updated
FROM PATIENTS P
LEFT JOIN PATIENTSTATUS ST ON ST.PATIENTSTATUS = P.PATIENTSTATUS
LEFT JOIN TITLES T ON T.TITLECODE = P.TITLECODE
LEFT JOIN SEX S ON S.SEXCODE = P.SEXCODE
LEFT JOIN ETHNICITY E ON E.ETHNICCODE = P.ETHNICCODE
LEFT JOIN PENSIONS PN ON PN.PENSIONCODE = P.PENSIONCODE
LEFT JOIN USERS U ON U.USERID = P.USERID
LEFT JOIN TITLES UT ON UT.TITLECODE = U.TITLECODE
WHERE P.RECORDSTATUS = 1;

CREATE VIEW BPS_Appointments AS
SELECT A.RECORDID AS RecordID,
  TRIM(TRIM(P.FIRSTNAME) || ' ' || TRIM(P.SURNAME)) {_CI} AS Patient, A.INTERNALID AS InternalID,
  A.APPOINTMENTDATE AS AppointmentDate, A.APPOINTMENTTIME AS AppointmentTime,
  A.APPOINTMENTLENGTH AS AppointmentLength, A.USERID AS UserID,
  TRIM(COALESCE(UT.TITLE || ' ', '') || TRIM(U.FIRSTNAME) || ' ' || TRIM(U.SURNAME))
    {_CI} AS Provider,
  A.LOCATIONID AS LocationID, A.URGENT AS Urgent, TY.DESCRIPTION AS AppointmentType,
  C.DESCRIPTION AS Status, A.ARRIVALTIME AS ArrivalTime, A.CONSULTATIONTIME AS ConsultationTime,
  TRIM(TRIM(B.FIRSTNAME) || ' ' || TRIM(B.SURNAME)) {_CI} AS BookedBy, A.REASON AS Reason
FROM APPOINTMENTS A
JOIN PATIENTS P ON P.INTERNALID = A.INTERNALID
JOIN USERS U ON U.USERID = A.USERID
LEFT JOIN TITLES UT ON UT.TITLECODE = U.TITLECODE
LEFT JOIN APPOINTMENTTYPES TY ON TY.APPOINTMENTCODE = A.APPOINTMENTTYPE
LEFT JOIN APPOINTMENTCODES C ON C.APPOINTMENTCODE = A.APPOINTMENTCODE
LEFT JOIN USERS B ON B.USERID = A.BOOKEDBY
WHERE A.RECORDSTATUS = 1;

CREATE VIEW BPS_Users AS
SELECT U.USERID AS UserID, U.SURNAME AS Surname, U.FIRSTNAME AS Firstname, T.TITLE AS Title,
  U.PROVIDERNO AS ProviderNo, U.PRESCRIBERNO AS PrescriberNo, U.HPII AS HPII,
  G.GROUPNAME AS GroupName, L.LOCATIONNAME AS LocationName, U.EMAIL AS Email,
  U.APPOINTMENTS AS Appointments
FROM USERS U
LEFT JOIN TITLES T ON T.TITLECODE = U.TITLECODE
LEFT JOIN USERGROUPS G ON G.GROUPID = U.GROUPID
LEFT JOIN LOCATIONS L ON L.LOCATIONID = U.LOCATIONID
WHERE U.RECORDSTATUS = 1 AND U.USERSTATUS = 1;

CREATE VIEW BPS_Sessions AS
SELECT S.USERID AS UserID,
  TRIM(COALESCE(T.TITLE || ' ', '') || TRIM(U.FIRSTNAME) || ' ' || TRIM(U.SURNAME))
    {_CI} AS Provider,
  CASE S.DAYOFWEEK WHEN 1 THEN 'Sunday' WHEN 2 THEN 'Monday' WHEN 3 THEN 'Tuesday'
    WHEN 4 THEN 'Wednesday' WHEN 5 THEN 'Thursday' WHEN 6 THEN 'Friday' ELSE 'Saturday' END
    {_CI} AS Day,
  S.STARTTIME AS StartTime, S.ENDTIME AS EndTime, S.LENGTH AS Length,
  S.STARTDATE AS StartDate, S.ENDDATE AS EndDate, S.LOCATIONID AS LocationID
FROM SESSIONS S
JOIN USERS U ON U.USERID = S.USERID
LEFT JOIN TITLES T ON T.TITLECODE = U.TITLECODE;

CREATE VIEW BPS_DaysAway AS
SELECT D.USERID AS UserID,
  TRIM(COALESCE(T.TITLE || ' ', '') || TRIM(U.FIRSTNAME) || ' ' || TRIM(U.SURNAME))
    {_CI} AS Provider,
  D.STARTDATE AS StartDate, D.FINISHDATE AS FinishDate, D.REASON AS Reason
FROM DAYSAWAY D
JOIN USERS U ON U.USERID = D.USERID
LEFT JOIN TITLES T ON T.TITLECODE = U.TITLECODE
WHERE D.RECORDSTATUS = 1;
"""
_BP_INDEXES = (
    "CREATE INDEX IX_PATIENTS_NAME ON PATIENTS (SURNAME, FIRSTNAME)",
    "CREATE INDEX IX_APPOINTMENTS_DATE ON APPOINTMENTS (APPOINTMENTDATE, USERID)",
    "CREATE INDEX IX_APPOINTMENTS_PATIENT ON APPOINTMENTS (INTERNALID)",
)


def _bp_locations(rng: random.Random) -> list[tuple[int, str]]:
    suburb, _state, _postcode = _pick(rng, _SUBURBS)
    return [(1, f"{suburb} Medical Centre   "), (2, f"{suburb} Family Practice - Branch")]


def _bp_site_rows(conn: sqlite3.Connection, site: DatasetSpec) -> None:
    conn.executemany(
        "UPDATE LOCATIONS SET LOCATIONNAME = ? WHERE LOCATIONID = ?",
        [(name, location) for location, name in _bp_locations(site.rng("bp-practice"))],
    )
    # PRACTICE is derived from the main location's name: regenerated beside it.
    conn.execute("DELETE FROM PRACTICE")
    _fill_bp_practice(conn, site)


@dataclasses.dataclass(frozen=True)
class _Provider:
    user_id: int
    location_id: int
    works_saturday: bool


def build_best_practice(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    """Create the Best Practice ``BPSPatients`` tables and views and fill them from ``spec``."""
    _register_collation(conn)
    conn.executescript(_BP_SCHEMA)
    conn.executescript(_BP_CLINICAL_SCHEMA)
    _run_script(conn, lambda c: _fill_best_practice(c, spec), _BP_INDEXES)
    _run_script(conn, lambda c: _fill_bp_clinical(c, spec), _BP_CLINICAL_INDEXES)
    add_information_schema(conn, "BPSPatients", CASE_INSENSITIVE_COLLATION)


def _fill_best_practice(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    conn.executemany("INSERT INTO TITLES VALUES (?, ?)", _TITLES)
    conn.executemany("INSERT INTO SEX VALUES (?, ?)", _SEXES)
    conn.executemany("INSERT INTO ETHNICITY VALUES (?, ?)", _ETHNICITIES)
    conn.executemany("INSERT INTO PENSIONS VALUES (?, ?)", _PENSIONS)
    conn.executemany("INSERT INTO PATIENTSTATUS VALUES (?, ?)", _PATIENT_STATUSES)
    conn.executemany("INSERT INTO APPOINTMENTCODES VALUES (?, ?)", _APPOINTMENT_STATUSES)
    # Trailing spaces, as fixed-width columns hand them back in the real thing.
    conn.executemany(
        "INSERT INTO APPOINTMENTTYPES VALUES (?, ?, ?)",
        [(code, f"{text:<25}", length) for code, text, length in _APPOINTMENT_TYPES],
    )
    conn.executemany("INSERT INTO USERGROUPS VALUES (?, ?)", _USER_GROUPS)
    conn.executemany("INSERT INTO LOCATIONS VALUES (?, ?)", _bp_locations(spec.rng("bp-practice")))
    conn.executemany(
        "INSERT INTO ROOMS VALUES (?, ?, ?)",
        [(i, f"Consult {i}", 1 if i <= 6 else 2) for i in range(1, 9)]
        + [(9, "Treatment room", 1), (10, "Nurse station", 1)],
    )
    providers = _fill_bp_users(conn, spec)
    _fill_bp_patients(conn, spec, [p.user_id for p in providers])
    away = _fill_bp_sessions_and_away(conn, spec, providers)
    _fill_bp_appointments(conn, spec, providers, away)


def _fill_bp_users(conn: sqlite3.Connection, spec: DatasetSpec) -> list[_Provider]:
    rng = spec.rng("bp-users")
    people = _People(rng, spec.today)
    doctors = max(4, min(40, spec.patients // 700))
    rows: list[tuple[Any, ...]] = []
    providers: list[_Provider] = []
    # Real Bp sites have provider ids like 2000000564 beside small legacy ids.
    next_id = 2_000_000_000 + int(rng.random() * 900) + 100
    for i in range(doctors):
        sex, first = people.sex_and_first_name()
        surname = people.surname()
        user_id = next_id
        next_id += int(rng.random() * 40) + 1
        location = 1 if i % 5 != 4 else 2
        group = 1 if i == 0 else 2
        works_saturday = i % 3 == 0
        providers.append(_Provider(user_id, location, works_saturday))
        hpii_payload = f"800361{int(rng.random() * 1_000_000_000):09d}"
        rows.append(
            (user_id, 1, 1, location, 5, 1, group, f"{surname:<20}", f"{first:<15}",
             people.provider_number(), f"{int(rng.random() * 9_000_000) + 1_000_000}",
             f"{hpii_payload}{luhn_check_digit(hpii_payload)}",
             people.email("dr." + first, surname))
        )  # fmt: skip
    staff = [(3, 2, 1), (3, 1, 1), (4, 1, 0), (4, 1, 0), (4, 2, 0)]
    for group, location, takes_appointments in staff:
        sex, first = people.sex_and_first_name()
        surname = people.surname()
        user_id = next_id
        next_id += int(rng.random() * 40) + 1
        if takes_appointments:
            providers.append(_Provider(user_id, location, False))
        title = 2 if sex == 2 else 1
        rows.append(
            (user_id, 1, 1, location, title, takes_appointments, group, f"{surname:<20}",
             f"{first:<15}", "", "", "", people.email(first, surname))
        )  # fmt: skip
    # A departed doctor: inactive users must not show in BPS_Users.
    sex, first = people.sex_and_first_name()
    rows.append(
        (next_id, 1, 2, 1, 5, 0, 2, f"{people.surname():<20}", f"{first:<15}",
         people.provider_number(), "", "", "")
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO USERS (USERID, RECORDSTATUS, USERSTATUS, LOCATIONID, TITLECODE, APPOINTMENTS,"
        " GROUPID, SURNAME, FIRSTNAME, PROVIDERNO, PRESCRIBERNO, HPII, EMAIL)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return providers


_CLOCK_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:00" for m in range(8 * 60, 17 * 60))


def _fill_bp_patients(conn: sqlite3.Connection, spec: DatasetSpec, doctors: list[int]) -> None:
    people = _People(spec.rng("bp-patients"), spec.today)
    pension_expiry = _midnight(spec.today.replace(year=spec.today.year + 2, day=1))
    rows = [
        _bp_patient(people, spec.today, doctors, pension_expiry, internal_id)
        for internal_id in range(1, spec.patients + 1)
    ]
    conn.executemany(f"INSERT INTO PATIENTS VALUES ({', '.join('?' * 41)})", rows)


def _bp_title(sex: int, age: int, r: Callable[[], float]) -> int:
    if sex == 1:
        title = 1 if age >= 16 else 6
    elif sex == 2:
        title = (2, 3, 4)[int(r() * 3)] if age >= 16 else 3
    else:
        title = 0
    return 5 if r() < 0.02 else title


def _bp_address(people: _People) -> str:
    address = people.street_address()
    # Trailing spaces, as fixed-width columns hand them back in the real thing.
    return address + "   " if people.random() < 0.1 else address


def _bp_patient_status(roll: float) -> int:
    return 1 if roll < 0.93 else (2 if roll < 0.985 else 3)  # active, inactive, deceased


def _bp_patient(
    people: _People, today: datetime.date, doctors: list[int], pension_expiry: str, internal_id: int
) -> tuple[Any, ...]:
    """One PATIENTS row: the hot path of a 200k-patient site, hence the plain locals."""
    rng, r, day_texts = people.rng, people.random, people.day_texts
    sex, first = people.sex_and_first_name()
    surname = people.surname()
    age_days = people.age_days()
    age = age_days // 365
    title = _bp_title(sex, age, r)
    suburb, state, postcode = people.suburb()
    address = _bp_address(people)
    patient_status = _bp_patient_status(r())
    pension = 0 if age < 65 and r() < 0.85 else (int(r() * 3) + 1)
    medicare, line = people.medicare() if r() < 0.94 else ("", "")
    created = day_texts[int(r() * 15 * 365)]
    created_at = created[:11] + _CLOCK_MINUTES[int(r() * len(_CLOCK_MINUTES))]
    return (
        internal_id,
        f"{int(r() * 1_000_000):06d}" if r() < 0.2 else "",
        1 if r() < 0.995 else 2,
        patient_status,
        title,
        sex,
        int(r() * 5),
        pension,
        0,
        internal_id if r() < 0.6 else 0,
        1 if r() < 0.8 else 0,
        doctors[int(r() * len(doctors))],
        first,
        surname,
        _pick(rng, _MALE_NAMES if sex == 1 else _FEMALE_NAMES) if r() < 0.4 else "",
        first[:3] if r() < 0.05 else "",
        address,
        "",
        suburb.upper(),
        postcode,
        "",
        "",
        "",
        day_texts[age_days],
        people.landline(state) if r() < 0.35 else "",
        people.landline(state) if r() < 0.1 else "",
        people.mobile() if age >= 12 and r() < 0.95 else "",
        medicare,
        line,
        f"{int(r() * 12) + 1:02d}/{today.year + int(r() * 5)}" if medicare else "",
        f"{int(r() * 1_000_000_000):09d}{'ABCDEFGHJK'[int(r() * 10)]}" if pension else "",
        "",
        "",
        created if pension else None,
        pension_expiry if pension else None,
        str(internal_id),
        people.ihi() if r() < 0.7 else "",
        _HEALTH_FUNDS[int(r() * len(_HEALTH_FUNDS))],
        people.email(first, surname) if age >= 16 and r() < 0.7 else "",
        created_at,
        created_at if r() < 0.5 else None,
    )


def _fill_bp_sessions_and_away(
    conn: sqlite3.Connection, spec: DatasetSpec, providers: list[_Provider]
) -> dict[int, tuple[datetime.date, datetime.date]]:
    sessions = []
    for provider in providers:
        # DAYOFWEEK follows SQL Server's DATEPART(dw) with DATEFIRST 7: Sunday = 1.
        for dow in range(2, 7):
            sessions.append(
                (provider.user_id, provider.location_id, dow, _DAY_START, _DAY_END, 900,
                 _midnight(spec.today.replace(month=1, day=1)), None)
            )  # fmt: skip
        if provider.works_saturday:
            sessions.append(
                (provider.user_id, provider.location_id, 7, _DAY_START, 12 * 3600, 900,
                 _midnight(spec.today.replace(month=1, day=1)), None)
            )  # fmt: skip
    conn.executemany("INSERT INTO SESSIONS VALUES (?, ?, ?, ?, ?, ?, ?, ?)", sessions)
    # One doctor is away for a week starting two days from today (BPS_DaysAway).
    away_doctor = providers[1].user_id
    start = spec.today + datetime.timedelta(days=2)
    finish = start + datetime.timedelta(days=6)
    conn.execute(
        "INSERT INTO DAYSAWAY (USERID, STARTDATE, FINISHDATE, REASON) VALUES (?, ?, ?, ?)",
        (away_doctor, _midnight(start), _midnight(finish), "Annual leave"),
    )
    return {away_doctor: (start, finish)}


def _fill_bp_appointments(
    conn: sqlite3.Connection,
    spec: DatasetSpec,
    providers: list[_Provider],
    away: dict[int, tuple[datetime.date, datetime.date]],
) -> None:
    rng = spec.rng("bp-appointments")
    r = rng.random
    patient_ids = [
        row[0]
        for row in conn.execute(
            "SELECT INTERNALID FROM PATIENTS WHERE RECORDSTATUS = 1 AND PATIENTSTATUS = 1"
        )
    ]
    receptionists = [
        row[0] for row in conn.execute("SELECT USERID FROM USERS WHERE GROUPID = 4 ORDER BY USERID")
    ]
    rows = []
    cancelled = []
    record_id = 1
    for day in _working_days(spec, saturdays=True):
        for provider in providers:
            if day.weekday() == 5 and not provider.works_saturday:
                continue
            leave = away.get(provider.user_id)
            if leave is not None and leave[0] <= day <= leave[1]:
                continue
            end = _DAY_END if day.weekday() < 5 else 12 * 3600
            occupancy = 0.75 if day <= spec.today else 0.75 * 0.9 ** ((day - spec.today).days / 7)
            t = _DAY_START
            while t < end:
                code, _text, length = _APPOINTMENT_TYPES[int(r() * 6) if r() < 0.5 else 0]
                length = min(length, end - t)
                if r() < occupancy and patient_ids:
                    status = _status_for(day, spec.today, rng)
                    arrived = t - int(r() * 4) * 300 if status >= 2 else 0
                    consulted = t + int(r() * 3) * 300 if status >= 3 else 0
                    video = f"https://video.example.com/room/{record_id:08d}" if code == 5 else ""
                    rows.append(
                        (record_id, patient_ids[int(r() * len(patient_ids))], provider.user_id,
                         provider.location_id, 1, _midnight(day), t, length, status, code,
                         1 if r() < 0.02 else 0, arrived, consulted, int(r() * 8) + 1,
                         receptionists[int(r() * len(receptionists))],
                         _REASONS[int(r() * len(_REASONS))], "", video,
                         _stamp(day - datetime.timedelta(days=int(r() * 21)), _DAY_START))
                    )  # fmt: skip
                    if r() < 0.03:
                        cancelled.append(record_id)
                    record_id += 1
                t += length
    conn.executemany(f"INSERT INTO APPOINTMENTS VALUES ({', '.join('?' * 19)})", rows)
    # Cancelled appointments stay in APPOINTMENTS with RECORDSTATUS 2 (emulator choice).
    conn.executemany("UPDATE APPOINTMENTS SET RECORDSTATUS = 2 WHERE RECORDID = ?", [
        (i,) for i in cancelled
    ])  # fmt: skip
    conn.executemany(
        "INSERT INTO CANCELLEDAPPOINTMENTS VALUES (?, ?, ?)",
        [(i, _midnight(spec.today - datetime.timedelta(days=1)), "Patient cancelled")
         for i in cancelled],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Best Practice clinical records: visits, current medications, investigations, the practice.
# The view columns follow DM's reading of a real Bp database (REFERENCE §10.1); the tables
# beneath them (VISITS, CURRENTRX, INVESTIGATIONS, PRACTICE, MESSAGES) are **invented** to
# back them. Each has its own random stream, so the older tables' rows are unchanged.

_BP_CLINICAL_SCHEMA = f"""
CREATE TABLE PRACTICE (PRACTICEID INTEGER PRIMARY KEY, PRACTICENAME VARCHAR(100) {_CI},
  ADDRESS1 VARCHAR(40) {_CI}, ADDRESS2 VARCHAR(40) {_CI}, CITY VARCHAR(40) {_CI},
  POSTCODE VARCHAR(4) {_CI}, PHONE VARCHAR(14) {_CI}, FAX VARCHAR(14) {_CI},
  EMAIL VARCHAR(250) {_CI}, ABN VARCHAR(14) {_CI});
CREATE TABLE VISITTYPES (VISITTYPE INTEGER PRIMARY KEY, DESCRIPTION VARCHAR(30) {_CI});
CREATE TABLE VISITS (VISITID INTEGER PRIMARY KEY, INTERNALID INTEGER NOT NULL,
  USERID INTEGER NOT NULL, LOCATIONID INTEGER, VISITDATE DATETIME NOT NULL,
  VISITTYPE INTEGER NOT NULL, DURATION INTEGER, APPOINTMENTID INTEGER,
  RECORDSTATUS INTEGER NOT NULL DEFAULT 1);
CREATE TABLE CURRENTRX (RECORDID INTEGER PRIMARY KEY, INTERNALID INTEGER NOT NULL,
  PRODUCTID INTEGER NOT NULL, DRUGNAME VARCHAR(100) {_CI}, DOSE VARCHAR(40) {_CI},
  FREQUENCY VARCHAR(40) {_CI}, PRN VARCHAR(3) {_CI}, ROUTE VARCHAR(20) {_CI},
  QUANTITY INTEGER, PRODUCTUNIT VARCHAR(20) {_CI}, REPEATS INTEGER,
  INDICATION VARCHAR(100) {_CI}, LASTDATE DATETIME, USERID INTEGER,
  RXSTATUS INTEGER NOT NULL DEFAULT 1, RECORDSTATUS INTEGER NOT NULL DEFAULT 1);
CREATE TABLE NOTATIONS (NOTATIONCODE INTEGER PRIMARY KEY, NOTATION VARCHAR(30) {_CI});
CREATE TABLE ACTIONS (ACTIONCODE INTEGER PRIMARY KEY, ACTION VARCHAR(30) {_CI});
CREATE TABLE INVESTIGATIONS (REPORTID INTEGER PRIMARY KEY, INTERNALID INTEGER NOT NULL,
  USERID INTEGER, TESTNAME VARCHAR(100) {_CI}, LABORATORY VARCHAR(60) {_CI},
  REQUESTED DATETIME, COLLECTED DATETIME, REPORTED DATETIME, CHECKED DATETIME,
  ACTIONED DATETIME, CHECKEDBY INTEGER, NOTATION INTEGER, ACTION INTEGER,
  COMMENT VARCHAR(200) {_CI}, RECORDSTATUS INTEGER NOT NULL DEFAULT 1);
CREATE TABLE MESSAGES (MESSAGEID INTEGER PRIMARY KEY, USERID INTEGER NOT NULL,
  SUBJECT VARCHAR(100) {_CI}, MESSAGE VARCHAR(4000) {_CI}, CREATED DATETIME NOT NULL,
  READ INTEGER NOT NULL DEFAULT 0);

CREATE VIEW BPS_Visits AS
SELECT V.VISITID AS VisitID, V.INTERNALID AS InternalID,
  TRIM(TRIM(P.FIRSTNAME) || ' ' || TRIM(P.SURNAME)) {_CI} AS Patient, V.VISITDATE AS VisitDate,
  VT.DESCRIPTION AS VisitType, V.USERID AS UserID,
  TRIM(COALESCE(UT.TITLE || ' ', '') || TRIM(U.FIRSTNAME) || ' ' || TRIM(U.SURNAME))
    {_CI} AS DrName,
  V.LOCATIONID AS LocationID, V.DURATION AS Duration
FROM VISITS V
JOIN PATIENTS P ON P.INTERNALID = V.INTERNALID
JOIN USERS U ON U.USERID = V.USERID
LEFT JOIN TITLES UT ON UT.TITLECODE = U.TITLECODE
LEFT JOIN VISITTYPES VT ON VT.VISITTYPE = V.VISITTYPE
WHERE V.RECORDSTATUS = 1;

CREATE VIEW BPS_CurrentRx AS
SELECT R.RECORDID AS RecordID, R.INTERNALID AS InternalID, R.PRODUCTID AS ProductID,
  R.DRUGNAME AS DrugName, R.DOSE AS Dose, R.FREQUENCY AS Frequency, R.PRN AS PRN,
  R.ROUTE AS Route, R.QUANTITY AS Quantity, R.PRODUCTUNIT AS ProductUnit,
  R.REPEATS AS Repeats, R.INDICATION AS Indication, R.LASTDATE AS LastDate,
  CASE R.RXSTATUS WHEN 1 THEN 'Long term' ELSE 'Short term' END {_CI} AS RxStatus
FROM CURRENTRX R
WHERE R.RECORDSTATUS = 1;

CREATE VIEW BPS_Investigations AS
SELECT I.REPORTID AS ReportID, I.INTERNALID AS InternalID, I.USERID AS UserID,
  I.TESTNAME AS TestName, I.LABORATORY AS Laboratory, I.REQUESTED AS Requested,
  I.COLLECTED AS Collected, I.REPORTED AS Reported, I.CHECKED AS Checked,
  I.ACTIONED AS Actioned,
  TRIM(COALESCE(CT.TITLE || ' ', '') || TRIM(C.FIRSTNAME) || ' ' || TRIM(C.SURNAME))
    {_CI} AS CheckedBy,
  N.NOTATION AS Notation, A.ACTION AS Action, I.COMMENT AS Comment
FROM INVESTIGATIONS I
LEFT JOIN USERS C ON C.USERID = I.CHECKEDBY
LEFT JOIN TITLES CT ON CT.TITLECODE = C.TITLECODE
LEFT JOIN NOTATIONS N ON N.NOTATIONCODE = I.NOTATION
LEFT JOIN ACTIONS A ON A.ACTIONCODE = I.ACTION
WHERE I.RECORDSTATUS = 1;
"""
# Visits and investigations follow the appointment book, small beside the patient list;
# current medications grow with it, so only they are worth an index.
_BP_CLINICAL_INDEXES = ("CREATE INDEX IX_CURRENTRX_PATIENT ON CURRENTRX (INTERNALID)",)

#: DM's list of Bp visit types.
_VISIT_TYPES = (
    (1, "Surgery"), (2, "Home"), (3, "Non Visit"), (4, "Hospital"), (5, "RACF"),
    (6, "Telephone"), (7, "SMS"), (8, "Email"), (9, "Locum Service"), (10, "Out of Office"),
    (11, "Other"), (12, "Hostel"), (13, "Telehealth"),
)  # fmt: skip
_NOTATIONS = ((0, ""), (1, "Normal"), (2, "Abnormal"), (3, "Borderline"), (4, "Not significant"))
_ACTIONS = (
    (0, ""), (1, "No action"), (2, "Recall"), (3, "Discuss at next visit"),
    (6, "Non-urgent Appointment"), (7, "Urgent Appointment"),
)  # fmt: skip
# (product id, name, dose, frequency, route, quantity, unit, repeats, indication): common
# Australian PBS medicines; ids are illustrative, not BPSDrugs product ids.
_MEDICINES = (
    (10011, "Atorvastatin 20mg tablet", "1", "Daily", "Oral", 30, "Tablet", 5,
     "Hypercholesterolaemia"),
    (10023, "Metformin 500mg tablet", "1", "Twice daily", "Oral", 100, "Tablet", 5,
     "Type 2 diabetes"),
    (10037, "Perindopril 5mg tablet", "1", "Daily", "Oral", 30, "Tablet", 5, "Hypertension"),
    (10042, "Amlodipine 5mg tablet", "1", "Daily", "Oral", 30, "Tablet", 5, "Hypertension"),
    (10058, "Pantoprazole 40mg tablet", "1", "Daily", "Oral", 30, "Tablet", 5, "Reflux"),
    (10063, "Sertraline 50mg tablet", "1", "Daily", "Oral", 30, "Tablet", 5, "Depression"),
    (10079, "Salbutamol 100mcg inhaler", "2 puffs", "When required", "Inhaled", 1, "Inhaler",
     2, "Asthma"),
    (10084, "Paracetamol 500mg tablet", "2", "Four times daily", "Oral", 100, "Tablet", 0,
     "Pain"),
    (10096, "Levothyroxine 50mcg tablet", "1", "Daily", "Oral", 200, "Tablet", 1,
     "Hypothyroidism"),
    (10102, "Rosuvastatin 10mg tablet", "1", "Daily", "Oral", 30, "Tablet", 5,
     "Hypercholesterolaemia"),
    (10117, "Amoxicillin 500mg capsule", "1", "Three times daily", "Oral", 20, "Capsule", 0,
     "Infection"),
    (10125, "Cholecalciferol 1000IU capsule", "1", "Daily", "Oral", 60, "Capsule", 0,
     "Vitamin D deficiency"),
)  # fmt: skip
_TESTS = (
    "Full blood count", "Urea, electrolytes, creatinine", "Liver function tests",
    "Lipid studies", "HbA1c", "Thyroid function tests", "Vitamin D", "Iron studies",
    "Urine microscopy and culture", "C-reactive protein", "PSA", "INR", "B12 and folate",
    "Chest X-ray", "Ultrasound abdomen",
)  # fmt: skip
_LABORATORIES = ("Laverty Pathology", "Douglass Hanly Moir", "Australian Clinical Labs",
                 "QML Pathology", "Sonic Imaging")  # fmt: skip


def _fill_bp_clinical(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    conn.executemany("INSERT INTO VISITTYPES VALUES (?, ?)", _VISIT_TYPES)
    conn.executemany("INSERT INTO NOTATIONS VALUES (?, ?)", _NOTATIONS)
    conn.executemany("INSERT INTO ACTIONS VALUES (?, ?)", _ACTIONS)
    _fill_bp_practice(conn, spec)
    _fill_bp_visits(conn, spec)
    _fill_bp_investigations(conn, spec)
    _fill_bp_current_rx(conn, spec)


def _fill_bp_practice(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    rng = spec.rng("bp-practice-details")
    people = _People(rng, spec.today)
    (name,) = conn.execute("SELECT LOCATIONNAME FROM LOCATIONS WHERE LOCATIONID = 1").fetchone()
    suburb = name.split(" Medical Centre")[0]
    postcode, state = next((p, st) for s, st, p in _SUBURBS if s == suburb)
    domain = _EMAIL_DOMAINS[int(rng.random() * len(_EMAIL_DOMAINS))]
    abn = f"{int(rng.random() * 90) + 10}{int(rng.random() * 1_000_000_000):09d}"
    conn.execute(
        "INSERT INTO PRACTICE VALUES (1, ?, ?, '', ?, ?, ?, ?, ?, ?)",
        (name, people.street_address(), suburb.upper(), postcode, people.landline(state),
         people.landline(state), f"reception@{domain}",
         f"{abn[:2]} {abn[2:5]} {abn[5:8]} {abn[8:]}"),
    )  # fmt: skip


def _fill_bp_visits(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    """One visit per attended appointment (Invoiced, Completed or Paid).

    In SQL, not a Python loop: a site has thousands of them. Telehealth bookings are
    Telehealth visits; of the rest 93% are in the surgery, chosen by a hash of the booking's
    id salted from the seed, so the same seed gives the same visits.
    """
    salt = int(spec.rng("bp-visits").random() * 1_000_000)
    conn.execute(
        "INSERT INTO VISITS (INTERNALID, USERID, LOCATIONID, VISITDATE, VISITTYPE, DURATION,"
        " APPOINTMENTID) SELECT INTERNALID, USERID, LOCATIONID,"
        " substr(APPOINTMENTDATE, 1, 11)"
        " || printf('%02d:%02d:00', APPOINTMENTTIME / 3600, APPOINTMENTTIME / 60 % 60),"
        " CASE WHEN APPOINTMENTTYPE = 5 THEN 13 WHEN (RECORDID * 7919 + ?1) % 100 < 93 THEN 1"
        " ELSE CASE (RECORDID * 104729 + ?1) % 4 WHEN 0 THEN 2 WHEN 1 THEN 4 WHEN 2 THEN 5"
        " ELSE 6 END END, APPOINTMENTLENGTH, RECORDID FROM APPOINTMENTS"
        " WHERE RECORDSTATUS = 1 AND APPOINTMENTCODE >= 5 ORDER BY RECORDID",
        (salt,),
    )


def _days_after(stamp: str, days: int) -> str:
    return _day_after(stamp[:10], days) + stamp[10:]


@functools.lru_cache(maxsize=4096)
def _day_after(day: str, days: int) -> str:
    # Cached: investigations fall on the few days of the appointment window.
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=days)).isoformat()


def _fill_bp_investigations(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    """Tests ordered at about a quarter of visits (one, sometimes two), each through
    collection, report and the doctor's check as far as today allows."""
    rng = spec.rng("bp-investigations")
    r = rng.random
    now = _midnight(spec.today)
    salt = int(r() * 1_000_000)
    ordered = conn.execute(
        "SELECT INTERNALID, USERID, VISITDATE FROM VISITS"
        " WHERE (VISITID * 7907 + ?) % 100 < 27 ORDER BY VISITID",
        (salt,),
    )
    rows: list[tuple[Any, ...]] = []
    for patient, user, when in ordered:
        for _ in range(1 + int(r() < 0.35)):
            requested = when
            collected = _days_after(requested, int(r() * 3))
            reported = _days_after(collected, int(r() * 3) + 1)
            if reported > now:
                reported_at = checked = checked_by = None
                notation = action = 0
            else:
                reported_at = reported
                checked = _days_after(reported, int(r() * 3))
                checked = checked if checked <= now else None
                checked_by = user if checked else None
                notation = (1, 1, 1, 2, 3, 4)[int(r() * 6)] if checked else 0
                action = (1, 1, 2, 3, 6, 7)[int(r() * 6)] if checked else 0
            rows.append(
                (len(rows) + 1, patient, user, _TESTS[int(r() * len(_TESTS))],
                 _LABORATORIES[int(r() * len(_LABORATORIES))], requested, collected,
                 reported_at, checked, checked if action else None, checked_by, notation,
                 action, "")
            )  # fmt: skip
    conn.executemany(f"INSERT INTO INVESTIGATIONS VALUES ({', '.join('?' * 14)}, 1)", rows)


def _fill_bp_current_rx(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    rng = spec.rng("bp-currentrx")
    r = rng.random
    doctors = [
        row[0]
        for row in conn.execute("SELECT USERID FROM USERS WHERE GROUPID IN (1, 2) ORDER BY USERID")
    ]
    rows: list[tuple[Any, ...]] = []
    for patient in range(1, spec.patients + 1):
        if r() >= 0.3:
            continue
        for medicine in rng.sample(_MEDICINES, int(r() * 3) + 1):
            last = spec.today - datetime.timedelta(days=int(r() * 365))
            long_term = 2 if medicine[0] in (10084, 10117) else 1
            rows.append(
                (len(rows) + 1, patient, *medicine[:4],
                 "Yes" if medicine[3] == "When required" else "No", *medicine[4:],
                 _midnight(last), doctors[int(r() * len(doctors))], long_term)
            )  # fmt: skip
    conn.executemany(f"INSERT INTO CURRENTRX VALUES ({', '.join('?' * 15)}, 1)", rows)


# --------------------------------------------------------------------------------------------
# Zedmed (invented schema, Firebird flavour)

_ZEDMED_CLINICAL_SCHEMA = """
CREATE TABLE DOCTOR (DOCTOR_ID INTEGER PRIMARY KEY, TITLE VARCHAR(10) COLLATE RTRIM,
  FIRST_NAME VARCHAR(40) COLLATE RTRIM, SURNAME VARCHAR(40) COLLATE RTRIM,
  PROVIDER_NO VARCHAR(8) COLLATE RTRIM, IS_ACTIVE CHAR(1) NOT NULL DEFAULT 'Y');
CREATE TABLE PATIENT (PATIENT_ID INTEGER PRIMARY KEY, TITLE VARCHAR(10) COLLATE RTRIM,
  FIRST_NAME VARCHAR(40) COLLATE RTRIM, SURNAME VARCHAR(40) COLLATE RTRIM,
  DATE_OF_BIRTH DATE, SEX CHAR(1), ADDRESS_1 VARCHAR(60) COLLATE RTRIM,
  SUBURB VARCHAR(40) COLLATE RTRIM, STATE VARCHAR(3), POSTCODE VARCHAR(4),
  HOME_PHONE VARCHAR(14), MOBILE_PHONE VARCHAR(14), EMAIL VARCHAR(120),
  MEDICARE_NO VARCHAR(10), MEDICARE_IRN VARCHAR(1), IS_ACTIVE CHAR(1) NOT NULL DEFAULT 'Y',
  USUAL_DOCTOR_ID INTEGER, CREATED_AT TIMESTAMP NOT NULL);
CREATE TABLE APPOINTMENT (APPOINTMENT_ID INTEGER PRIMARY KEY, PATIENT_ID INTEGER NOT NULL,
  DOCTOR_ID INTEGER NOT NULL, APPT_DATE DATE NOT NULL, START_TIME TIME NOT NULL,
  DURATION_MINUTES INTEGER NOT NULL, STATUS VARCHAR(10) NOT NULL, REASON VARCHAR(200));
"""

_ZEDMED_CLINICAL_INDEXES = (
    "CREATE INDEX IX_PATIENT_NAME ON PATIENT (SURNAME, FIRST_NAME)",
    "CREATE INDEX IX_APPOINTMENT_DATE ON APPOINTMENT (APPT_DATE, DOCTOR_ID)",
)

_ZEDMED_ACCOUNTS_SCHEMA = """
CREATE TABLE MBS_ITEM (ITEM_NO VARCHAR(6) PRIMARY KEY, DESCRIPTION VARCHAR(120),
  SCHEDULE_FEE NUMERIC(10, 2) NOT NULL);
CREATE TABLE INVOICE (INVOICE_ID INTEGER PRIMARY KEY, PATIENT_ID INTEGER NOT NULL,
  DOCTOR_ID INTEGER NOT NULL, INVOICE_DATE DATE NOT NULL, ITEM_NO VARCHAR(6) NOT NULL,
  AMOUNT NUMERIC(10, 2) NOT NULL, BULK_BILLED CHAR(1) NOT NULL, PAID CHAR(1) NOT NULL);
"""

# Approximate MBS fees: realistic-looking, not authoritative.
_MBS_ITEMS = (
    ("3", "Level A consultation", 19.60), ("23", "Level B consultation", 42.85),
    ("36", "Level C consultation", 82.90), ("44", "Level D consultation", 122.15),
    ("721", "GP management plan", 156.55), ("2713", "Mental health treatment plan review", 79.15),
    ("10990", "Bulk billing incentive", 7.50), ("91800", "Telehealth consultation, short", 19.60),
)  # fmt: skip
_ZEDMED_STATUSES = ("BOOKED", "ARRIVED", "SEEN", "DNA")


def _zedmed_doctor_count(spec: DatasetSpec) -> int:
    return max(3, min(30, spec.patients // 800))


def build_zedmed_clinical(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    """Create and fill the invented Zedmed clinical catalogue (patients, doctors, bookings)."""
    conn.executescript(_ZEDMED_CLINICAL_SCHEMA)
    _run_script(conn, lambda c: _fill_zedmed_clinical(c, spec), _ZEDMED_CLINICAL_INDEXES)
    add_firebird_system_tables(conn)


def _fill_zedmed_clinical(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    rng = spec.rng("zedmed-clinical")
    people = _People(rng, spec.today)
    r = rng.random
    doctors = []
    for doctor_id in range(1, _zedmed_doctor_count(spec) + 1):
        _sex, first = people.sex_and_first_name()
        doctors.append((doctor_id, "Dr", first, people.surname(), people.provider_number(), "Y"))
    conn.executemany("INSERT INTO DOCTOR VALUES (?, ?, ?, ?, ?, ?)", doctors)
    patients = []
    for patient_id in range(1, spec.patients + 1):
        sex, first = people.sex_and_first_name()
        surname = people.surname()
        dob = people.day_texts[people.age_days()]
        suburb, state, postcode = people.suburb()
        medicare, irn = people.medicare()
        created = people.day_texts[int(r() * 3650)]
        patients.append(
            (patient_id, ("", "Mr", "Ms", "Mx")[sex if sex < 3 else 3], first, surname,
             dob, "MFXU"[sex - 1], people.street_address(), suburb.upper(), state,
             postcode, people.landline(state) if r() < 0.3 else None, people.mobile(),
             people.email(first, surname) if r() < 0.6 else None, medicare[:10], irn,
             "Y" if r() < 0.94 else "N", int(r() * len(doctors)) + 1,
             created[:11] + _CLOCK_MINUTES[int(r() * len(_CLOCK_MINUTES))])
        )  # fmt: skip
    conn.executemany(f"INSERT INTO PATIENT VALUES ({', '.join('?' * 18)})", patients)
    appointments = []
    appointment_id = 1
    for day in _working_days(spec, saturdays=False):
        for doctor in doctors:
            t = _DAY_START
            while t < _DAY_END:
                minutes = (15, 15, 15, 30, 10)[int(r() * 5)]
                if r() < 0.7:
                    status = "BOOKED" if day > spec.today else _ZEDMED_STATUSES[int(r() * 3) + 1]
                    appointments.append(
                        (appointment_id, int(r() * spec.patients) + 1, doctor[0], _midnight(day),
                         f"{t // 3600:02d}:{t // 60 % 60:02d}:00", minutes, status,
                         _REASONS[int(r() * len(_REASONS))])
                    )  # fmt: skip
                    appointment_id += 1
                t += minutes * 60
    conn.executemany("INSERT INTO APPOINTMENT VALUES (?, ?, ?, ?, ?, ?, ?, ?)", appointments)


def build_zedmed_accounts(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    """Create and fill the invented Zedmed accounts catalogue (MBS items and invoices)."""
    conn.executescript(_ZEDMED_ACCOUNTS_SCHEMA)
    _run_script(
        conn,
        lambda c: _fill_zedmed_accounts(c, spec),
        ("CREATE INDEX IX_INVOICE_DATE ON INVOICE (INVOICE_DATE)",),
    )
    add_firebird_system_tables(conn)


def _fill_zedmed_accounts(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    rng = spec.rng("zedmed-accounts")
    r = rng.random
    conn.executemany("INSERT INTO MBS_ITEM VALUES (?, ?, ?)", _MBS_ITEMS)
    invoices = []
    doctors = _zedmed_doctor_count(spec)
    start = spec.today.toordinal() - spec.window_days
    for invoice_id in range(1, max(10, spec.patients // 2) + 1):
        item, _description, fee = _MBS_ITEMS[int(r() * len(_MBS_ITEMS))]
        bulk_billed = r() < 0.7
        day = datetime.date.fromordinal(start + int(r() * (spec.window_days + 1)))
        invoices.append(
            (invoice_id, int(r() * spec.patients) + 1, int(r() * doctors) + 1, _midnight(day),
             item, fee if bulk_billed else round(fee * 1.9, 2), "Y" if bulk_billed else "N",
             "Y" if r() < 0.9 else "N")
        )  # fmt: skip
    conn.executemany("INSERT INTO INVOICE VALUES (?, ?, ?, ?, ?, ?, ?, ?)", invoices)


# --------------------------------------------------------------------------------------------
# D4W (invented minimal dental schema)

_D4W_SCHEMA = f"""
CREATE TABLE PROVIDERS (PROVIDER_ID INTEGER PRIMARY KEY, NAME VARCHAR(80) {_CI},
  PROVIDER_TYPE VARCHAR(30) {_CI}, PROVIDER_NO VARCHAR(8) {_CI}, ACTIVE INTEGER NOT NULL);
CREATE TABLE PATIENTS (PATIENT_ID INTEGER PRIMARY KEY, FIRSTNAME VARCHAR(40) {_NOCASE},
  SURNAME VARCHAR(40) {_NOCASE}, DOB DATETIME, GENDER CHAR(1), ADDRESS VARCHAR(80) {_CI},
  SUBURB VARCHAR(40) {_CI}, STATE VARCHAR(3) {_CI}, POSTCODE VARCHAR(4) {_CI},
  MOBILE VARCHAR(14) {_CI}, EMAIL VARCHAR(120) {_CI}, HEALTH_FUND VARCHAR(40) {_CI},
  ACTIVE INTEGER NOT NULL DEFAULT 1);
CREATE TABLE ITEM_CODES (ITEM_CODE VARCHAR(3) PRIMARY KEY, DESCRIPTION VARCHAR(120) {_CI},
  FEE NUMERIC(10, 2) NOT NULL);
CREATE TABLE APPOINTMENTS (APPT_ID INTEGER PRIMARY KEY, PATIENT_ID INTEGER NOT NULL,
  PROVIDER_ID INTEGER NOT NULL, APPT_START DATETIME NOT NULL, DURATION_MIN INTEGER NOT NULL,
  CHAIR INTEGER NOT NULL, STATUS VARCHAR(12) {_CI} NOT NULL, NOTE VARCHAR(200) {_CI});
CREATE TABLE TREATMENTS (TREATMENT_ID INTEGER PRIMARY KEY, PATIENT_ID INTEGER NOT NULL,
  PROVIDER_ID INTEGER NOT NULL, TREATMENT_DATE DATETIME NOT NULL, ITEM_CODE VARCHAR(3) NOT NULL,
  TOOTH VARCHAR(2), FEE NUMERIC(10, 2) NOT NULL);
"""

_D4W_INDEXES = (
    "CREATE INDEX IX_D4W_PATIENTS_NAME ON PATIENTS (SURNAME, FIRSTNAME)",
    "CREATE INDEX IX_D4W_APPOINTMENTS_START ON APPOINTMENTS (APPT_START)",
)

# ADA Australian Schedule of Dental Services item numbers; fees are illustrative.
_ADA_ITEMS = (
    ("011", "Comprehensive oral examination", 75.0), ("012", "Periodic oral examination", 60.0),
    ("022", "Intraoral periapical or bitewing radiograph", 40.0),
    ("114", "Removal of calculus - first visit", 140.0), ("121", "Topical fluoride", 35.0),
    ("311", "Removal of a tooth or part(s) thereof", 230.0),
    ("521", "Adhesive restoration - one surface - anterior tooth", 180.0),
    ("531", "Adhesive restoration - one surface - posterior tooth", 190.0),
    ("415", "Complete chemo-mechanical preparation of root canal - one canal", 420.0),
    ("615", "Full crown - veneered - indirect", 1650.0),
)  # fmt: skip
_D4W_PROVIDER_TYPES = ("Dentist", "Dentist", "Hygienist", "Oral Health Therapist")
# FDI two-digit tooth notation, permanent teeth.
_TEETH = tuple(f"{q}{t}" for q in range(1, 5) for t in range(1, 9))


def build_d4w(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    """Create and fill the invented D4W dental catalogue."""
    _register_collation(conn)
    conn.executescript(_D4W_SCHEMA)
    _run_script(conn, lambda c: _fill_d4w(c, spec), _D4W_INDEXES)
    add_information_schema(conn, D4W_CATALOGUE, CASE_INSENSITIVE_COLLATION)


def _fill_d4w(conn: sqlite3.Connection, spec: DatasetSpec) -> None:
    rng = spec.rng("d4w")
    people = _People(rng, spec.today)
    r = rng.random
    conn.executemany("INSERT INTO ITEM_CODES VALUES (?, ?, ?)", _ADA_ITEMS)
    providers = []
    for provider_id in range(1, max(3, min(20, spec.patients // 1000)) + 2):
        _sex, first = people.sex_and_first_name()
        kind = _D4W_PROVIDER_TYPES[(provider_id - 1) % len(_D4W_PROVIDER_TYPES)]
        title = "Dr " if kind == "Dentist" else ""
        providers.append(
            (provider_id, f"{title}{first} {people.surname()}", kind, people.provider_number(), 1)
        )
    conn.executemany("INSERT INTO PROVIDERS VALUES (?, ?, ?, ?, ?)", providers)
    patients = []
    for patient_id in range(1, spec.patients + 1):
        sex, first = people.sex_and_first_name()
        surname = people.surname()
        suburb, state, postcode = people.suburb()
        patients.append(
            (patient_id, first, surname, people.day_texts[people.age_days()],
             "MFXU"[sex - 1], people.street_address(), suburb, state, postcode, people.mobile(),
             people.email(first, surname) if r() < 0.6 else "",
             _HEALTH_FUNDS[int(r() * len(_HEALTH_FUNDS))], 1 if r() < 0.95 else 0)
        )  # fmt: skip
    conn.executemany(f"INSERT INTO PATIENTS VALUES ({', '.join('?' * 13)})", patients)
    appointments: list[tuple[Any, ...]] = []
    treatments: list[tuple[Any, ...]] = []
    for day in _working_days(spec, saturdays=False):
        for chair, provider in enumerate(providers, start=1):
            t = _DAY_START + 3600
            while t < _DAY_END:
                minutes = (30, 30, 45, 60)[int(r() * 4)]
                if r() < 0.65:
                    patient = int(r() * spec.patients) + 1
                    status = "Booked" if day > spec.today else ("Completed", "FTA")[int(r() > 0.95)]
                    appointments.append(
                        (len(appointments) + 1, patient, provider[0], _stamp(day, t), minutes,
                         chair, status, "")
                    )  # fmt: skip
                    if status == "Completed":
                        item, _description, fee = _ADA_ITEMS[int(r() * len(_ADA_ITEMS))]
                        treatments.append(
                            (len(treatments) + 1, patient, provider[0], _midnight(day), item,
                             _TEETH[int(r() * len(_TEETH))] if item >= "311" else None, fee)
                        )  # fmt: skip
                t += minutes * 60
    conn.executemany("INSERT INTO APPOINTMENTS VALUES (?, ?, ?, ?, ?, ?, ?, ?)", appointments)
    conn.executemany("INSERT INTO TREATMENTS VALUES (?, ?, ?, ?, ?, ?, ?)", treatments)


_SITE_ROWS: dict[str, Callable[[sqlite3.Connection, DatasetSpec], None]] = {
    BEST_PRACTICE_CATALOGUE: _bp_site_rows,
}
