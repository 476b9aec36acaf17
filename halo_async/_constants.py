"""Every default of the client side in one place.

Each value says where it comes from: the official OpenAPI document (OAS 26.619.10213),
the engineering reference (REFERENCE.md in the project's shared folder), or our own choice.
"""

from __future__ import annotations

from typing import Final

# -- Environments (REFERENCE §1) ------------------------------------------------------------
PRODUCTION_BASE_URL: Final = "https://api.haloconnect.io"
STAGE_BASE_URL: Final = "https://api.stage.haloconnect.io"

API_KEY_ENV: Final = "HALO_API_KEY"
BASE_URL_ENV: Final = "HALO_BASE_URL"
# "debug" or "info": the halo_async logger writes to stderr at that level (as OPENAI_LOG).
LOG_ENV: Final = "HALO_LOG"

# Azure API Management's subscription-key header, the OAS global security scheme.
API_KEY_HEADER: Final = "Ocp-Apim-Subscription-Key"

# Hosts for which plain http:// is allowed: the local emulator, never a real deployment.
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

# -- Command limits (OAS ImmediateMaxTimeInQueue / AsyncMaxTimeInQueue) -------------------
IMMEDIATE_MAX_TIME_IN_QUEUE_MS: Final = 60_000
IMMEDIATE_DEFAULT_TIME_IN_QUEUE_MS: Final = 30_000
ASYNC_MAX_TIME_IN_QUEUE_MS: Final = 7_200_000
ASYNC_DEFAULT_TIME_IN_QUEUE_MS: Final = 3_600_000

# Registered queries (REFERENCE §7): runs at least a minute apart, for at most a day.
REGISTERED_MIN_FREQUENCY_S: Final = 60
REGISTERED_MAX_DURATION_S: Final = 86_400

# The 32 parameter type names of the OAS `Type` enum.
PARAMETER_TYPES: Final = frozenset(
    {
        "BigInt", "Binary", "Bit", "Char", "String", "Date", "DateTime", "DateTime2",
        "DateTimeOffset", "Decimal", "Float", "Image", "Int", "Money", "NChar", "NText",
        "NVarChar", "Real", "SmallDateTime", "SmallInt", "SmallMoney", "Structured", "Text",
        "Time", "Timestamp", "TinyInt", "Udt", "UniqueIdentifier", "VarBinary", "VarChar",
        "Variant", "Xml",
    }
)  # fmt: skip

# The `practiceManagementName` query values of find-sites and pair-site (OAS enum).
PMS_NAMES: Final = ("Best Practice", "Zedmed", "D4w")

# -- Timeouts (our choice; REFERENCE §9) -----------------------------------------------------
# Connecting should be quick; a slow connect is a network problem worth retrying.
CONNECT_TIMEOUT_S: Final = 10.0
# Reads of status, pages and sites: a 1 MB page over a slow link still fits.
REQUEST_TIMEOUT_S: Final = 60.0
# An immediate query may wait maxTimeInQueue in Halo Link's queue and then run for up to
# 30 s (OAS 504 text; the overview says 60 s), so its read timeout is the queue time plus
# 65 s of headroom (REFERENCE §9: the one public client's 20 s is too short).
IMMEDIATE_TIMEOUT_HEADROOM_S: Final = 65.0

# -- Connection pool (our choice) -----------------------------------------------------------
# Every Halo site sits behind one host, so aiohttp's per-host limit is the client-wide cap
# on requests in flight; per-site limits are the fan-out's job.
CONNECTION_LIMIT: Final = 100

# -- Retries (our choice, see _retry.py for the why of each) -------------------------------
RETRY_MAX_ATTEMPTS: Final = 5
RETRY_INITIAL_DELAY_S: Final = 0.5
RETRY_MAX_DELAY_S: Final = 30.0
# The deadline bounds every attempt too (an attempt is cut to the time left), so it must
# leave room for the longest single one: an immediate query that waits its full 60 s queue
# time gets 125 s; 180 s also leaves room for a retry of a shorter request or two.
RETRY_DEADLINE_S: Final = 180.0
RETRY_AFTER_CAP_S: Final = 120.0

# -- Polling and streaming (our choice; REFERENCE §9: no polling interval is published) ---
# Start quick (small queries finish in about a second), back off to a few seconds so that
# hundreds of queued queries do not hammer the API.
POLL_INITIAL_INTERVAL_S: Final = 0.25
POLL_MULTIPLIER: Final = 1.5
POLL_MAX_INTERVAL_S: Final = 5.0
# Async queries get 5 minutes of database time (B-ASYNC), excluding queue and upload; the
# upload of a large result gets its own margin.
ASYNC_EXECUTION_LIMIT_S: Final = 300.0
ASYNC_UPLOAD_MARGIN_S: Final = 600.0
# Pages (about 1 MB each) fetched ahead of the consumer: enough to hide a round trip,
# few enough that memory stays a few MB per job.
PAGE_PREFETCH: Final = 3

# -- Fan-out (our choice) ---------------------------------------------------------------------
# Queries in flight across one fan-out: enough to keep hundreds of sites busy without
# holding hundreds of open polls; the connection limit caps the HTTP requests beneath it.
FANOUT_MAX_IN_FLIGHT: Final = 64
# Halo Link runs one query at a time per site; more would only queue on the site.
FANOUT_PER_SITE: Final = 1
# Fewer pages ahead per site than a lone job: many sites share the memory.
FANOUT_PAGE_PREFETCH: Final = 2
# Streamed pages (fan_out(stream=True)) fetched but not yet taken by the consumer, at most:
# with ~1 MB pages this bounds the fan-out's buffer near 16 MB of JSON (a few times that
# decoded) however many sites finish at once; prefetch windows add theirs on top.
FANOUT_BUFFERED_PAGES: Final = 16

# -- Workers on arq (our choice) ---------------------------------------------------------------
# Entries per shard: enough that a worker's fan-out keeps its sites busy, few enough that a
# run spreads over the workers and a dead worker's shard is a small part of the run.
ARQ_SHARD_SIZE: Final = 50
# How long a dead worker's shard waits before another worker runs it; a live worker renews
# it every third of it. Longer than a loaded worker's pauses, short against a shard's run.
ARQ_LEASE_S: Final = 30.0
# One shard's longest run: its queries may wait in Halo's queue for up to two hours.
ARQ_SHARD_TIMEOUT_S: Final = 3 * 3600.0

USER_AGENT: Final = "halo-async"

LOGGER_NAME: Final = "halo_async"

# Error answers: the message quotes at most this much of the body (an HTML 502 page from a
# gateway can be megabytes, and messages end up in logs), and the error keeps at most this
# much of the body itself for the caller to inspect.
ERROR_MESSAGE_MAX_CHARS: Final = 500
ERROR_BODY_KEPT_BYTES: Final = 65_536

# Redirects: Halo's API does not redirect, but a proxy in front of it may. Same-origin ones
# are followed for requests that change nothing, up to this many in a row.
MAX_REDIRECTS: Final = 5

# -- Decoding (our choice; measured with `python -m benchmarks.run --only decode --only stall`)
# Result page bodies this large or larger are decoded in a worker thread. Inline, a usual
# 1 MB page (a ~1.3 MB body) holds the event loop for ~3 ms, and the same body sent to the
# thread costs ~0.5-2 ms more CPU (the hop, the slicing) for little gain; an 8 MB page (a
# ~11 MB body) holds it for 40-70 ms, and a few arriving together for hundreds of ms. 2 MiB
# keeps the usual pages inline and sends everything from ~1.5 MB of rows up off the loop.
DECODE_OFF_LOOP_MIN_BYTES: Final = 2 * 1024 * 1024
# Off the loop, rows are parsed this many bytes of JSON at a time (~0.3 ms of orjson each):
# orjson holds the GIL for a whole call, so the loop's thread waits for it about one slice
# (the decoding thread offers the GIL between slices). Smaller slices cost no measurable
# CPU down to 32 KiB.
DECODE_SLICE_BYTES: Final = 64 * 1024
