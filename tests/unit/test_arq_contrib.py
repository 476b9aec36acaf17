"""halo_async.contrib.arq without a worker: how a run is sharded, what is refused before
anything is enqueued, and what a missing extra says."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from halo_async.contrib.arq import (
    SHARD_FUNCTION,
    enqueue_fan_out,
    shard_site_ids,
    worker_settings,
)
from halo_async.errors import InvalidArgumentError


def test_shards_keep_every_occurrence_of_a_site_together_in_order() -> None:
    sites = ["a", "b", "a", "c", "d", "b", "e", "f", "g"]

    shards = shard_site_ids(sites, 3)

    assert shards == [["a", "a"], ["b", "b", "c"], ["d", "e", "f"], ["g"]]
    assert sorted(site for shard in shards for site in shard) == sorted(sites)
    for site in set(sites):
        assert sum(site in shard for shard in shards) == 1


def test_a_site_listed_more_often_than_a_shard_holds_is_a_shard_of_its_own() -> None:
    assert shard_site_ids(["x", "a", "a", "a", "y"], 2) == [["x"], ["a", "a", "a"], ["y"]]


class Untouchable:
    """A Redis that fails the test if anything is sent to it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"redis.{name} used before the arguments were checked")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"run_id": " "}, "run_id"),
        ({"run_id": "r", "shard_size": 0}, "shard_size"),
        ({"run_id": "r", "site_ids": "not-a-list"}, "site_ids"),
        ({"run_id": "r", "max_time_in_queue": -1}, "max_time_in_queue"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_enqueued(
    arguments: dict[str, Any], named: str
) -> None:
    site_ids = arguments.pop("site_ids", ["2b6f3f2e-0000-4000-8000-000000000001"])

    with pytest.raises(InvalidArgumentError) as raised:
        await enqueue_fan_out(Untouchable(), "SELECT 1", site_ids, **arguments)  # type: ignore[arg-type]

    assert raised.value.field == named


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"client": "HaloClient"}, "client"),
        ({"sink": None}, "sink"),
        ({"lease": 0}, "lease"),
        ({"limits": {"max_in_flight": 4}}, "limits"),
    ],
)
def test_bad_worker_settings_are_refused(arguments: dict[str, Any], named: str) -> None:
    settings: dict[str, Any] = {"sink": print, **arguments}

    with pytest.raises(InvalidArgumentError) as raised:
        worker_settings(**settings)

    assert raised.value.field == named


def test_worker_settings_register_the_shard_function_beside_the_application_s() -> None:
    async def own(ctx: dict[str, Any]) -> None: ...

    settings = worker_settings(sink=print, functions=[own], max_jobs=3)

    names = [
        getattr(function, "name", getattr(function, "__name__", None))
        for function in settings["functions"]
    ]
    assert names == [SHARD_FUNCTION, "own"]
    assert settings["max_jobs"] == 3
    assert (
        settings["job_timeout"] > 3600
    )  # a shard waits for queued queries; arq's 300 s would cut it


def test_the_arq_glue_without_its_extra_names_the_install() -> None:
    code = "import sys; sys.modules['arq'] = None\nimport halo_async.contrib.arq"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )

    assert result.returncode == 1
    assert "pip install 'halo-async[arq]'" in result.stderr.splitlines()[-1]
