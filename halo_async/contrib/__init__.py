"""Glue for the frameworks halo-async is embedded in, each behind its own extra.

``halo_async.contrib.fastapi`` (``pip install 'halo-async[fastapi]'``): a lifespan that owns
one :class:`~halo_async.HaloClient`, dependencies, NDJSON row streaming and the webhook
route. ``halo_async.contrib.arq`` (``pip install 'halo-async[arq]'``): a fan-out sharded
across arq workers, resumed from a shared Redis ledger. Nothing here is imported by
``import halo_async``.
"""
