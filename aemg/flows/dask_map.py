"""A ``map`` that runs on Dask: a LocalCluster by default, any scheduler when given an address."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]


class DaskMap:
    """``map_fn(fn, items)`` on a Dask client, plus :mod:`aemg.parallel`'s ``keep`` and ``then``:
    kept results are futures, and ``then`` runs where each one lives (no trip through the driver)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return self.client.gather(self.client.map(fn, list(items), pure=False))

    def keep(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return self.client.map(fn, list(items), pure=False)

    def then(self, fn: Callable[[Any, Any], Any], kept: list[Any], items: list[Any]) -> list[Any]:
        return self.client.gather(self.client.map(fn, kept, list(items), pure=False))


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
        yield DaskMap(client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
