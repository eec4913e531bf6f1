"""How library code fans work out: any ``map``, and, where the map can, results left where they were made.

Stages take a ``map_fn(fn, items) -> results`` (builtin ``map`` by default; the flows pass one
that runs on Dask). A write that must know every result's size before anyone writes (a
harmonized recording's length decides where the next one goes) runs in two steps: :func:`keep`
computes the results and leaves them on the workers that made them (Dask futures), :func:`then`
runs a second function beside each kept result. Only what the second function returns comes
back. A plain ``map`` has nowhere else to keep a result, so there both steps run here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

MapFn = Callable[..., Iterable[Any]]


def keep(map_fn: MapFn, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``fn`` over ``items``, each result left where it was computed when ``map_fn`` can."""
    kept = getattr(map_fn, "keep", None)
    return kept(fn, items) if kept is not None else list(map_fn(fn, items))


def then(map_fn: MapFn, fn: Callable[[Any, Any], Any], kept: list[Any], items: list[Any]) -> list[Any]:
    """``fn(result, item)`` beside each kept result (on its worker); returns what ``fn`` returns."""
    after = getattr(map_fn, "then", None)
    if after is not None:
        return after(fn, kept, items)
    return list(map_fn(lambda pair: fn(*pair), list(zip(kept, items, strict=True))))
