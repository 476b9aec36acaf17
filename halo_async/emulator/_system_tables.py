"""The catalogue views integrators use to discover a practice database's schema.

* SQL Server (Best Practice, D4W): ``INFORMATION_SCHEMA.TABLES`` and ``INFORMATION_SCHEMA.COLUMNS``
  with SQL Server's names and data types (``int``, ``varchar``, ``datetime``), not SQLite's;
  and the ``sys.objects``, ``sys.tables``, ``sys.views``, ``sys.columns``, ``sys.schemas``
  catalog views.
* Firebird (Zedmed): ``RDB$DATABASE`` (the one-row table Firebird selects constants from),
  ``RDB$RELATIONS``, ``RDB$RELATION_FIELDS`` and ``RDB$FIELDS``, with Firebird's blank-padded
  ``CHAR(31)`` names and its numeric field type codes.

Both are ordinary tables, written once when the catalogue is built, from SQLite's own schema
(``sqlite_master`` and ``PRAGMA table_info``): the emulated schemas are fixed, so a snapshot is
exact, and reading it needs no pragma at query time.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

__all__ = ["add_firebird_system_tables", "add_information_schema"]

# A SQLite declared type: name, optional (length) or (precision, scale).
_DECLARED = re.compile(r"^\s*([A-Za-z]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?")


def _declared(type_text: str) -> tuple[str, int | None, int | None]:
    match = _DECLARED.match(type_text or "")
    if match is None:
        return "", None, None
    name, first, second = match.groups()
    return name.upper(), int(first) if first else None, int(second) if second else None


def _user_objects(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(name, 'table' | 'view') of the schema's own objects, in creation order."""
    return [
        (name, kind)
        for name, kind in conn.execute(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')"
            " AND name NOT LIKE 'sqlite%' ORDER BY rowid"
        )
        if not name.upper().startswith(("INFORMATION_SCHEMA.", "SYS.", "RDB$"))
    ]


def _columns(conn: sqlite3.Connection, name: str) -> Iterator[tuple[int, str, str, bool, bool]]:
    """(position from 1, column, declared type, nullable, primary key) of a table or view."""
    escaped = name.replace("`", "``")
    for cid, column, type_text, not_null, default, pk in conn.execute(
        f"PRAGMA table_info(`{escaped}`)"
    ):
        del default
        yield cid + 1, column, type_text, not (not_null or pk), bool(pk)


# --------------------------------------------------------------------------------------------
# SQL Server

_SQL_SERVER_TYPES = {
    "INTEGER": "int", "INT": "int", "VARCHAR": "varchar", "CHAR": "char", "DATETIME": "datetime",
    "DATE": "date", "TIME": "time", "TIMESTAMP": "datetime", "NUMERIC": "numeric",
    "DECIMAL": "decimal", "REAL": "real", "FLOAT": "float", "BLOB": "varbinary", "TEXT": "text",
}  # fmt: skip
#: A view column computed by an expression has no declared type in SQLite; in the Best
#: Practice views such columns are names put together from parts (e.g. UsualDoctor vc(162)).
_COMPUTED_TEXT_LENGTH = 162

_INFORMATION_SCHEMA = """
CREATE TABLE `INFORMATION_SCHEMA.TABLES` (TABLE_CATALOG VARCHAR(128) {ci},
  TABLE_SCHEMA VARCHAR(128) {ci}, TABLE_NAME VARCHAR(128) {ci}, TABLE_TYPE VARCHAR(10) {ci});
CREATE TABLE `INFORMATION_SCHEMA.COLUMNS` (TABLE_CATALOG VARCHAR(128) {ci},
  TABLE_SCHEMA VARCHAR(128) {ci}, TABLE_NAME VARCHAR(128) {ci}, COLUMN_NAME VARCHAR(128) {ci},
  ORDINAL_POSITION INTEGER, COLUMN_DEFAULT VARCHAR(4000), IS_NULLABLE VARCHAR(3) {ci},
  DATA_TYPE VARCHAR(128) {ci}, CHARACTER_MAXIMUM_LENGTH INTEGER, NUMERIC_PRECISION INTEGER,
  NUMERIC_SCALE INTEGER, DATETIME_PRECISION INTEGER, COLLATION_NAME VARCHAR(128) {ci});
"""


_Column = tuple[str, int | None, int | None, int | None, int | None]


def _sql_server_column(type_text: str) -> _Column:
    """(data type, max length, numeric precision, scale, datetime precision)."""
    name, first, second = _declared(type_text)
    data_type = _SQL_SERVER_TYPES.get(name, "varchar")
    if data_type in ("varchar", "char"):
        return data_type, first or _COMPUTED_TEXT_LENGTH, None, None, None
    if data_type == "int":
        return data_type, None, 10, 0, None
    if data_type in ("numeric", "decimal"):
        return data_type, None, first or 18, second or 0, None
    if data_type in ("datetime", "date", "time"):
        return data_type, None, None, None, 3 if data_type == "datetime" else 0
    return data_type, None, None, None, None


def add_information_schema(conn: sqlite3.Connection, database: str, collation: str) -> None:
    """Write SQL Server's INFORMATION_SCHEMA.TABLES and .COLUMNS for the catalogue's schema."""
    ci = f"COLLATE {collation}"
    objects = _user_objects(conn)
    conn.executescript(_INFORMATION_SCHEMA.format(ci=ci))
    tables = [
        (database, "dbo", name, "VIEW" if kind == "view" else "BASE TABLE")
        for name, kind in objects
    ]
    columns = []
    for name, _kind in objects:
        for position, column, type_text, nullable, _pk in _columns(conn, name):
            data_type, length, precision, scale, datetime_precision = _sql_server_column(type_text)
            text = data_type in ("varchar", "char")
            columns.append(
                (database, "dbo", name, column, position, None, "YES" if nullable else "NO",
                 data_type, length, precision, scale, datetime_precision,
                 "Latin1_General_CI_AS" if text else None)
            )  # fmt: skip
    conn.executemany("INSERT INTO `INFORMATION_SCHEMA.TABLES` VALUES (?, ?, ?, ?)", tables)
    conn.executemany(
        f"INSERT INTO `INFORMATION_SCHEMA.COLUMNS` VALUES ({', '.join('?' * 13)})", columns
    )
    _add_sys_catalog(conn, ci)


#: sys.types ids of SQL Server's types, and the bytes a value takes (max_length).
_SYSTEM_TYPES = {
    "int": (56, 4), "varchar": (167, None), "char": (175, None), "datetime": (61, 8),
    "date": (40, 3), "time": (41, 5), "numeric": (108, 9), "decimal": (106, 9),
    "float": (62, 8), "real": (59, 4), "varbinary": (165, -1), "text": (35, 16),
}  # fmt: skip
_OBJECT_IDS_FROM = 245_575_913  # SQL Server's user object ids are large; any will do

_SYS_CATALOG = """
CREATE TABLE `sys.schemas` (name VARCHAR(128) {ci}, schema_id INTEGER, principal_id INTEGER);
CREATE TABLE `sys.objects` (name VARCHAR(128) {ci}, object_id INTEGER, schema_id INTEGER,
  type CHAR(2) {ci}, type_desc VARCHAR(60) {ci}, create_date DATETIME, modify_date DATETIME);
CREATE TABLE `sys.columns` (object_id INTEGER, name VARCHAR(128) {ci}, column_id INTEGER,
  system_type_id INTEGER, user_type_id INTEGER, max_length INTEGER, precision INTEGER,
  scale INTEGER, is_nullable INTEGER, is_identity INTEGER);
CREATE VIEW `sys.tables` AS SELECT * FROM `sys.objects` WHERE type = 'U';
CREATE VIEW `sys.views` AS SELECT * FROM `sys.objects` WHERE type = 'V';
"""


def _add_sys_catalog(conn: sqlite3.Connection, ci: str) -> None:
    """SQL Server's sys.schemas, sys.objects, sys.tables, sys.views and sys.columns, from the
    INFORMATION_SCHEMA rows just written."""
    conn.executescript(_SYS_CATALOG.format(ci=ci))
    conn.execute("INSERT INTO `sys.schemas` VALUES ('dbo', 1, 1)")
    created = "2019-07-01T09:00:00"
    ids: dict[str, int] = {}
    objects = []
    for name, kind in conn.execute(
        "SELECT TABLE_NAME, TABLE_TYPE FROM `INFORMATION_SCHEMA.TABLES`"
    ):
        ids[name] = _OBJECT_IDS_FROM + 16 * len(ids)
        view = kind == "VIEW"
        objects.append(
            (name, ids[name], 1, "V " if view else "U ", "VIEW" if view else "USER_TABLE",
             created, created)
        )  # fmt: skip
    columns = []
    for table, column, position, nullable, data_type, length, precision, scale in conn.execute(
        "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, IS_NULLABLE, DATA_TYPE,"
        " CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE"
        " FROM `INFORMATION_SCHEMA.COLUMNS`"
    ):
        type_id, size = _SYSTEM_TYPES.get(data_type, (167, None))
        primary = position == 1 and data_type == "int" and nullable == "NO"
        columns.append(
            (ids[table], column, position, type_id, type_id, size if size else length,
             precision or 0, scale or 0, int(nullable == "YES"), int(primary))
        )  # fmt: skip
    conn.executemany("INSERT INTO `sys.objects` VALUES (?, ?, ?, ?, ?, ?, ?)", objects)
    conn.executemany("INSERT INTO `sys.columns` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", columns)


# --------------------------------------------------------------------------------------------
# Firebird

#: RDB$FIELDS.RDB$FIELD_TYPE codes: 7 smallint, 8 integer, 10 float, 12 date, 13 time,
#: 14 char, 16 bigint (and numeric), 27 double, 35 timestamp, 37 varchar, 261 blob.
_FIREBIRD_TYPES = {
    "INTEGER": 8, "INT": 8, "SMALLINT": 7, "BIGINT": 16, "NUMERIC": 16, "DECIMAL": 16,
    "FLOAT": 10, "REAL": 10, "DOUBLE": 27, "DATE": 12, "TIME": 13, "TIMESTAMP": 35,
    "DATETIME": 35, "CHAR": 14, "VARCHAR": 37, "BLOB": 261, "TEXT": 261,
}  # fmt: skip
_FIREBIRD_SIZES = {7: 2, 8: 4, 10: 4, 12: 4, 13: 4, 16: 8, 27: 8, 35: 8, 261: 8}
_NAME_WIDTH = 31  # Firebird 2.5/3 system names are CHAR(31), blank-padded

_FIREBIRD_SYSTEM = """
CREATE TABLE `RDB$DATABASE` (`RDB$DESCRIPTION` BLOB, `RDB$RELATION_ID` SMALLINT,
  `RDB$SECURITY_CLASS` CHAR(31), `RDB$CHARACTER_SET_NAME` CHAR(31));
CREATE TABLE `RDB$RELATIONS` (`RDB$RELATION_NAME` CHAR(31) COLLATE RTRIM,
  `RDB$RELATION_ID` SMALLINT, `RDB$SYSTEM_FLAG` SMALLINT, `RDB$VIEW_SOURCE` BLOB,
  `RDB$RELATION_TYPE` SMALLINT, `RDB$DESCRIPTION` BLOB);
CREATE TABLE `RDB$RELATION_FIELDS` (`RDB$FIELD_NAME` CHAR(31) COLLATE RTRIM,
  `RDB$RELATION_NAME` CHAR(31) COLLATE RTRIM, `RDB$FIELD_SOURCE` CHAR(31) COLLATE RTRIM,
  `RDB$FIELD_POSITION` SMALLINT, `RDB$NULL_FLAG` SMALLINT, `RDB$SYSTEM_FLAG` SMALLINT);
CREATE TABLE `RDB$FIELDS` (`RDB$FIELD_NAME` CHAR(31) COLLATE RTRIM, `RDB$FIELD_TYPE` SMALLINT,
  `RDB$FIELD_LENGTH` SMALLINT, `RDB$FIELD_SCALE` SMALLINT, `RDB$CHARACTER_LENGTH` SMALLINT,
  `RDB$FIELD_PRECISION` SMALLINT, `RDB$SYSTEM_FLAG` SMALLINT);
"""


def _padded(name: str) -> str:
    return f"{name:<{_NAME_WIDTH}}"


def add_firebird_system_tables(conn: sqlite3.Connection) -> None:
    """Write Firebird's RDB$ system tables for the catalogue's schema."""
    objects = _user_objects(conn)
    conn.executescript(_FIREBIRD_SYSTEM)
    conn.execute("INSERT INTO `RDB$DATABASE` VALUES (NULL, 128, NULL, 'UTF8')")
    relations = []
    fields: list[tuple[Any, ...]] = []
    sources: list[tuple[Any, ...]] = []
    for relation_id, (name, kind) in enumerate(objects, start=128):
        view = kind == "view"
        relations.append((_padded(name), relation_id, 0, "(view)" if view else None, int(view)))
        for position, column, type_text, nullable, _pk in _columns(conn, name):
            source = _padded(f"RDB${len(sources) + 1}")
            type_name, first, second = _declared(type_text)
            code = _FIREBIRD_TYPES.get(type_name, 37)
            length = (first or 0) if code in (14, 37) else _FIREBIRD_SIZES.get(code, 8)
            scale = -(second or 0) if type_name in ("NUMERIC", "DECIMAL") else 0
            precision = first if type_name in ("NUMERIC", "DECIMAL") else None
            character_length = length if code in (14, 37) else None
            sources.append((source, code, length, scale, character_length, precision, 0))
            fields.append(
                (_padded(column), _padded(name), source, position - 1, None if nullable else 1, 0)
            )
    conn.executemany("INSERT INTO `RDB$RELATIONS` VALUES (?, ?, ?, ?, ?, NULL)", relations)
    conn.executemany("INSERT INTO `RDB$RELATION_FIELDS` VALUES (?, ?, ?, ?, ?, ?)", fields)
    conn.executemany("INSERT INTO `RDB$FIELDS` VALUES (?, ?, ?, ?, ?, ?, ?)", sources)
    # The system tables list themselves, flagged as system tables as Firebird's are.
    system = ("RDB$DATABASE", "RDB$RELATIONS", "RDB$RELATION_FIELDS", "RDB$FIELDS")
    conn.executemany(
        "INSERT INTO `RDB$RELATIONS` VALUES (?, ?, 1, NULL, 0, NULL)",
        [(_padded(name), index) for index, name in enumerate(system)],
    )
