"""Atomic, locked publication of dataset groups into a Zarr v3 store.

A publish never modifies the live store. A group is first written, outside any lock, into a
private *build* folder beside the store (so a long harmonization streams its output to disk and
does not hold up other writers); a build folder is owned by its writer through a lock file inside
it, released by the kernel if the writer dies. Then, under the store's file lock (two harmonize
runs at once), the writer builds a complete next version of the store beside it: metadata files
copied, chunk files hard-linked (cheap, and never written to), the built group moved in, root
metadata re-consolidated, the group read back and validated. The next version then takes the
store's place in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so a reader, or a writer
killed at any instant, sees either the whole previous store or the whole new one, never a group
whose chunks disagree with the root's consolidated metadata. Where the exchange is not supported
the swap is two renames; a crash between them leaves the previous store under a side name, which
the next writer or reader puts back. Debris of a crashed writer (build folders no live writer
owns, staging copies) is removed by the next one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from filelock import FileLock, Timeout

from aemg.errors import AemgError

# Zarr v3 marks consolidated metadata as an extension; xarray relies on it to see new groups.
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)
# Fixed-width unicode (see text_array) is zarr-python's "fixed_length_utf32" type, still marked unstable in v3.
warnings.filterwarnings("ignore", message=r"The data type \(FixedLengthUTF32")

METADATA_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")
OWNER_LOCK = ".owner.lock"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def text_array(values: Iterable[object]) -> np.ndarray:
    """Strings as fixed-width unicode (``<U<n>``), the dtype every store's text variables are written in.

    Zarr v3 writes Python/object strings as variable-length strings, which read back as numpy's
    ``StringDType``: ``ds.where(ds.subject == "x")`` then raises ``DTypePromotionError`` (the NaN
    fill cannot be promoted) and pandas sees an unfamiliar dtype. Fixed-width unicode reads back
    as plain ``<U`` and works in every xarray idiom (selection, ``where``, ``groupby``, ``to_dataframe``).
    """
    text = [str(v) for v in values]
    return np.asarray(text, dtype=f"<U{max((len(s) for s in text), default=1) or 1}")


def _sibling(store: Path, kind: str) -> Path:
    return store.parent / f".{store.name}.{kind}-{uuid.uuid4().hex[:8]}"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _recover(store: Path) -> None:
    """Undo what a crashed writer left: put back a store moved aside, drop staging copies."""
    for old in sorted(store.parent.glob(f".{store.name}.old-*")):
        if not store.exists():
            old.rename(store)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for trash in store.parent.glob(f".{store.name}.trash-*"):  # layout of earlier versions
        group = trash.name.split(".trash-", 1)[1].rsplit("-", 1)[0]
        if store.exists() and not (store / group).exists():
            trash.rename(store / group)
        else:
            shutil.rmtree(trash, ignore_errors=True)
    for staging in store.parent.glob(f".{store.name}.staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    for build in store.parent.glob(f".{store.name}.build-*"):
        owner = FileLock(str(build / OWNER_LOCK))
        try:
            owner.acquire(timeout=0)
        except Timeout:
            continue  # a live writer is still building this one
        try:
            shutil.rmtree(build, ignore_errors=True)
        finally:
            owner.release()


def _lock_path(store: Path) -> Path:
    return store.parent / f".{store.name}.lock"


@contextmanager
def store_lock(store: Path, timeout: float = 600) -> Iterator[None]:
    """Hold the store's writer lock, after repairing what a crashed writer left."""
    store = Path(store).resolve()
    store.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_lock_path(store)), timeout=timeout):
        _recover(store)
        yield


def _check_group_name(group: str) -> None:
    if not group or "/" in group or "\\" in group or group in (".", "..") or group.startswith("."):
        raise ValueError(f"group name {group!r} must be one path component, e.g. a dataset id")


def _is_new(store: Path) -> bool:
    """True for a store still to be created; a folder holding something else is refused."""
    if not store.exists() or (store.is_dir() and not any(store.iterdir())):
        return True
    if not (store / "zarr.json").is_file():
        raise AemgError(f"{store} exists but is not a Zarr v3 store; move it away or choose another store path")
    return False


def _snapshot(store: Path, staging: Path, skip: str) -> None:
    """``staging`` := ``store`` without group ``skip``: metadata copied, chunks hard-linked."""
    if _is_new(store):
        zarr.open_group(staging, mode="w-", zarr_format=3)
        return
    for dirpath, dirnames, filenames in os.walk(store):
        rel = Path(dirpath).relative_to(store)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d != skip]
        (staging / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            src, dst = Path(dirpath) / name, staging / rel / name
            if name in METADATA_FILES:
                shutil.copy2(src, dst)  # rewritten by consolidation: never share its inode
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def _swap_in(store: Path, staging: Path) -> None:
    """Make ``staging`` the store; afterwards ``staging`` holds the previous store, if any."""
    if not store.exists():
        staging.rename(store)
        return
    if _exchange(staging, store):
        return
    old = _sibling(store, "old")  # fallback: a crash between these renames is undone by _recover
    store.rename(old)
    staging.rename(store)
    old.rename(staging)


@contextmanager
def group_writer(
    store: Path, group: str, *, validate: Callable[[xr.Dataset | xr.DataTree], None] | None = None, tree: bool = False
) -> Iterator[Path]:
    """Yield a private folder to write group ``group`` into (as a Zarr v3 group); publish it on exit.

    The folder lies beside the store, outside the lock: a writer may stream into it for as long as
    it needs. On a clean exit the group is moved into a staging copy of the store, checked by
    ``validate`` there (read back as ``xr.DataTree`` when ``tree``, else as ``xr.Dataset``) and swapped in
    atomically. On any failure (``validate``'s exception, or the body's) the store is left
    byte-identical and the folder is removed.
    """
    _check_group_name(group)
    store = Path(store).resolve()
    with store_lock(store):  # created and owned in one step: _recover never sees it unowned
        _is_new(store)  # refuse a wrong store path now, not after a long build
        build = _sibling(store, "build")
        build.mkdir()
        owner = FileLock(str(build / OWNER_LOCK))
        owner.acquire(timeout=0)
    try:
        yield build / group
        with store_lock(store):
            staging = _sibling(store, "staging")
            try:
                _snapshot(store, staging, skip=group)
                (build / group).rename(staging / group)
                zarr.consolidate_metadata(str(staging))
                if validate is not None:  # read back through the root, as readers will see it
                    if tree:
                        validate(xr.open_datatree(staging, engine="zarr", group=group))
                    else:
                        validate(xr.open_zarr(staging, group=group))
                _swap_in(store, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        shutil.rmtree(build, ignore_errors=True)
        owner.release()


def publish_group(
    store: Path,
    group: str,
    data: xr.Dataset | xr.DataTree,
    *,
    validate: Callable[[xr.Dataset | xr.DataTree], None] | None = None,
    encoding: dict | None = None,
) -> None:
    """Write ``data`` as ``store/<group>`` atomically, replacing any previous version.

    Fails (``validate``'s exception, or the write's) leaving the store byte-identical.
    """
    with group_writer(store, group, validate=validate, tree=isinstance(data, xr.DataTree)) as target:
        data.to_zarr(target, mode="w-", zarr_format=3, consolidated=True, encoding=encoding)


def _recover_unlocked_view(store: Path) -> None:
    """A reader finding no store but a store moved aside by a crashed writer repairs it first."""
    if not store.exists() and any(store.parent.glob(f".{store.name}.old-*")):
        with store_lock(store):
            pass


def list_groups(store: Path) -> list[str]:
    store = Path(store)
    _recover_unlocked_view(store.resolve())
    if not (store / "zarr.json").exists():
        return []
    return sorted(p.name for p in store.iterdir() if p.is_dir() and (p / "zarr.json").exists())


def open_group(store: Path, group: str) -> xr.Dataset:
    """Lazy (Dask-backed) view of one dataset group; fails listing the groups that exist."""
    store = Path(store)
    _recover_unlocked_view(store.resolve())
    if not (store / group / "zarr.json").exists():
        raise AemgError(f"{store}: no group {group!r}; groups present: {list_groups(store) or 'none'}")
    return xr.open_zarr(store, group=group, consolidated=False)
