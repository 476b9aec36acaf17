"""The transport's request URLs: the SDK's own plain paths are joined to the base as they
are; any other path is encoded as yarl encodes it."""

from __future__ import annotations

import pytest
import yarl

from halo_async._http import HttpTransport
from halo_async._retry import RetryPolicy

SITE = "7907e4b8-3f80-4323-940f-1ed129c4af74"


def transport(base_url: str) -> HttpTransport:
    return HttpTransport(
        api_key="k",
        base_url=base_url,
        session=None,
        retry=RetryPolicy(),
        connect_timeout=1.0,
        request_timeout=1.0,
        connection_limit=1,
    )


@pytest.mark.parametrize("base", ["https://halo.example", "https://halo.example/api/v1/"])
@pytest.mark.parametrize(
    "path",
    [
        f"/integrator/sites/{SITE}/queries/async",
        f"/integrator/sites/{SITE}/queries/{SITE}/results/12",
        "/a_b.c~d-e",
        "/with space",
        "/per%cent",
        "/caf\u00e9",
        "/q?x=1",
        "/frag#x",
        "/semi;colon",
        "/plus+sign",
    ],
)
def test_a_path_reads_as_yarl_reads_it(base: str, path: str) -> None:
    url = transport(base)._url(path)
    expected = yarl.URL(base.rstrip("/") + path)
    assert str(url) == str(expected)
    assert url.raw_path == expected.raw_path
    assert url.raw_query_string == expected.raw_query_string
