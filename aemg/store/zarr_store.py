"""Atomic, locked publication of dataset groups into a Zarr v3 store.

A group is written completely to a staging store beside the target, read back and validated,
then renamed into place and the root metadata re-consolidated. Readers therefore see either the
previous group or the new one, never a half-written one; a crash leaves staging debris that the
next writer removes. A file lock serialises writers (two harmonize runs at once).
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import xarray as xr
import zarr
from filelock import FileLock

# Zarr v3 marks consolidated metadata as an extension; xarray relies on it to see new groups.
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)


def _sibling(store: Path, kind: str, group: str) -> Path:
    return store.parent / f".{store.name}.{kind}-{group}-{uuid.uuid4().hex[:8]}"


def _recover(store: Path) -> None:
    """Undo what a crashed writer left: restore a trashed group that has no replacement."""
    for trash in store.parent.glob(f".{store.name}.trash-*"):
        group = trash.name.split(".trash-", 1)[1].rsplit("-", 1)[0]
        if not (store / group).exists():
            trash.rename(store / group)
        else:
            shutil.rmtree(trash, ignore_errors=True)
    for staging in store.parent.glob(f".{store.name}.staging-*"):
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def store_lock(store: Path, timeout: float = 600) -> Iterator[None]:
    store.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store.parent / f".{store.name}.lock"), timeout=timeout):
        _recover(store)
        if not (store / "zarr.json").exists():
            zarr.open_group(store, mode="a", zarr_format=3)
        yield


def publish_group(
    store: Path,
    group: str,
    data: xr.Dataset | xr.DataTree,
    *,
    validate: Callable[[xr.Dataset | xr.DataTree], None] | None = None,
    encoding: dict | None = None,
) -> None:
    """Write ``data`` as ``store/<group>`` atomically, replacing any previous version."""
    store = Path(store)
    with store_lock(store):
        staging = _sibling(store, "staging", group)
        try:
            data.to_zarr(staging, mode="w-", zarr_format=3, consolidated=True, encoding=encoding)
            if validate is not None:
                is_tree = isinstance(data, xr.DataTree)
                validate(xr.open_datatree(staging, engine="zarr") if is_tree else xr.open_zarr(staging))
            target = store / group
            trash = _sibling(store, "trash", group)
            if target.exists():
                target.rename(trash)
            staging.rename(target)
            shutil.rmtree(trash, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        zarr.consolidate_metadata(str(store))


def list_groups(store: Path) -> list[str]:
    store = Path(store)
    if not (store / "zarr.json").exists():
        return []
    return sorted(p.name for p in store.iterdir() if p.is_dir() and (p / "zarr.json").exists())


def open_group(store: Path, group: str) -> xr.Dataset:
    """Lazy (Dask-backed) view of one dataset group; fails listing the groups that exist."""
    from aemg.errors import AemgError

    store = Path(store)
    if not (store / group / "zarr.json").exists():
        raise AemgError(f"{store}: no group {group!r}; groups present: {list_groups(store) or 'none'}")
    return xr.open_zarr(store, group=group, consolidated=False)
