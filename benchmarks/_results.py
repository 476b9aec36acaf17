"""Results of a chosen number of pages, manufactured by SQL the emulator runs.

Best Practice's ``PATIENTS`` rows are about 800 bytes of JSON (some forty columns, as a real
``SELECT *`` returns), and a ``CROSS JOIN`` of the table with itself holds millions of them:
``SELECT TOP n b.* ...`` (``b`` varies fastest, so every patient comes in turn) makes a
result of any size without a site of millions of patients.
"""

from __future__ import annotations

import orjson

from halo_async import HaloClient

__all__ = ["ROW_SOURCE", "sql_for_pages"]

ROW_SOURCE = "PATIENTS a CROSS JOIN PATIENTS b"
_PROBE_ROWS = 200


async def sql_for_pages(halo: HaloClient, site: str, pages: int, page_size: int) -> str:
    """SQL whose result fills about ``pages`` pages of ``page_size`` bytes on ``site``.

    The row count comes from the measured size of a sample of the same rows; the emulator
    never splits a row across pages, so the count may land a page either side.
    """
    probe = await halo.immediate_query(site, f"SELECT TOP {_PROBE_ROWS} b.* FROM {ROW_SOURCE}")
    sample = probe.decode_rows()
    row_bytes = (len(orjson.dumps(sample)) - 2) / len(sample)  # less the brackets
    rows_per_page = max(1, int((page_size - 2) // (row_bytes + 1)))  # +1: the comma
    return f"SELECT TOP {pages * rows_per_page} b.* FROM {ROW_SOURCE}"
