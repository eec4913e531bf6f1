"""A ``map`` that runs on Dask: a LocalCluster by default, any scheduler when given an address."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]


@contextmanager
def dask_map(address: str | None = None, n_workers: int | None = None) -> Iterator[MapFn]:
    """Yield ``map_fn(fn, items) -> list``; ``address='sync'`` runs in-process without Dask."""
    address = address or os.environ.get("AEMG_DASK_ADDRESS") or None
    if address == "sync":
        yield lambda fn, items: list(map(fn, items))
        return
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)

    cluster = None
    if address is None:
        cluster = LocalCluster(
            n_workers=n_workers or min(2, os.cpu_count() or 1),
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=40,
        )
    client = Client(cluster if cluster is not None else address)
    try:
        yield lambda fn, items: client.gather(client.map(fn, list(items), pure=False))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
