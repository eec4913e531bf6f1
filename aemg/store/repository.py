"""Stores as Icechunk repositories: one group per dataset, every write one transaction.

Why Icechunk: a store must stay readable while it is rewritten, survive a writer killed at any
instant, take two writers at once, and do all that on object storage, where there are no renames
or file locks. Icechunk gives Zarr v3 ACID commits: chunks are written as new objects and a
commit moves the ``main`` branch to a new snapshot in one conditional write, so a reader sees the
previous snapshot or the new one, never a mix, and every earlier snapshot stays readable.

How a group is written (:func:`group_writer`):

1. a private branch ``aemg-write-<id>`` is created at main's tip; the writer (and, through
   :meth:`GroupWrite.fork`, Dask workers writing their own chunks) writes the group there and
   commits; nothing on main changes meanwhile;
2. the committed group is read back and validated (``validate``), as readers will see it;
3. publish: if main has not moved, main is moved to the private branch's head, conditionally on
   its old tip (``reset_branch(from_snapshot_id=...)``); if another run committed meanwhile, the
   group is copied from the private head onto the new tip and committed there (other groups'
   changes are kept; the same group changed by both runs is won by the last to publish), retried
   while commits keep racing, and reported in the returned :class:`Published`.

A failure at any step leaves main untouched and deletes the private branch. A writer killed
mid-way leaves its private branch and unreferenced chunks: unreachable from main, removed by
Icechunk's ``garbage_collect``. On a local folder Icechunk's conditional update is not atomic
across processes, so the publish step there also holds a file lock beside the store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
import xarray as xr
import zarr
from filelock import FileLock
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from aemg.errors import AemgError
from aemg.store.location import StoreLike, StoreRef, as_ref, local_path, storage_for

MAIN = "main"
WRITE_BRANCH = "aemg-write-"
PUBLISH_TRIES = 20
log = logging.getLogger(__name__)
# Icechunk warns at every open that a local folder is not safe for concurrent commits: publish
# holds a file lock there (see module docstring), so the warning says nothing actionable.
icechunk.set_logs_filter("error")


def open_repository(store: StoreLike, *, create: bool = False) -> icechunk.Repository:
    """The store's repository; ``create`` makes an empty one where there is none."""
    ref = as_ref(store)
    storage = storage_for(ref)
    folder = local_path(ref)
    try:
        exists = icechunk.Repository.exists(storage)
    except icechunk.IcechunkError as exc:
        raise AemgError(f"store {ref.url}: cannot reach it ({_first_line(exc)}); check the URL and the AWS_* "
                        "environment variables (AWS_ENDPOINT_URL, credentials, AWS_ALLOW_HTTP for http)") from exc
    if exists:
        return icechunk.Repository.open(storage)
    if not create:
        _refuse_foreign(folder)
        raise AemgError(f"no store at {ref.url}; run `aemg harmonize` (or `aemg tokenize`) to create it")
    with _publish_lock(ref):  # two runs creating one new local store: the second must open the first's
        if icechunk.Repository.exists(storage):
            return icechunk.Repository.open(storage)
        _refuse_foreign(folder)
        try:
            return icechunk.Repository.create(storage)
        except icechunk.IcechunkError:  # on S3 another run created it first: creation is conditional
            if not icechunk.Repository.exists(storage):
                raise
            return icechunk.Repository.open(storage)


def _refuse_foreign(folder: Path | None) -> None:
    """A local path holding something other than a store is never written into (nor read as one)."""
    if folder is not None and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        hint = " (a plain Zarr store from an older aemg)" if (folder / "zarr.json").exists() else ""
        raise AemgError(f"{folder} exists but is not an aemg store{hint}; move it away or choose another store path")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_session(store: StoreLike) -> icechunk.Session:
    """A read-only session at the ref's snapshot (an id or a tag), else at main's tip."""
    ref = as_ref(store)
    repo = open_repository(ref)
    if ref.snapshot is None:
        return repo.readonly_session(branch=MAIN)
    if ref.snapshot in repo.list_tags():
        return repo.readonly_session(tag=ref.snapshot)
    try:
        return repo.readonly_session(snapshot_id=ref.snapshot)
    except (icechunk.IcechunkError, ValueError) as exc:
        raise AemgError(f"store {ref.url}: no snapshot or tag {ref.snapshot!r}; `aemg history --store {ref.url}` "
                        "lists them") from exc


def pin(store: StoreLike) -> StoreRef:
    """The store pinned to main's current tip, so every task of a run reads the same version."""
    ref = as_ref(store)
    if ref.snapshot is not None:
        return ref
    return StoreRef(ref.url, open_repository(ref).lookup_branch(MAIN))


def snapshot_record(store: StoreLike) -> dict[str, Any]:
    """What names this store's current version exactly: its URL, main's tip and the groups there.

    Stages write it to ``metrics/snapshots/<store>.json`` for DVC: a DVC revision then names the
    exact data even when the store lives on object storage, outside DVC's reach.
    """
    ref = pin(store)
    return {"url": ref.url, "snapshot": ref.snapshot, "groups": list_groups(ref)}


def store_exists(store: StoreLike) -> bool:
    return icechunk.Repository.exists(storage_for(store))


def list_groups(store: StoreLike) -> list[str]:
    """The dataset groups of a store; none for a store that does not exist yet."""
    if not store_exists(store):
        return []
    root = zarr.open_group(read_session(store).store, mode="r")
    return sorted(name for name, _ in root.groups())


def _root_with(store: StoreLike, group: str) -> zarr.Group:
    """The store's root (read-only), after checking it holds ``group`` (a path such as ``uci/events``)."""
    root = zarr.open_group(read_session(store).store, mode="r")
    try:
        node = root[group]
    except KeyError:
        node = None
    if not isinstance(node, zarr.Group):
        top = sorted(name for name, _ in root.groups())
        raise AemgError(f"{as_ref(store)}: no group {group!r}; groups present: {top or 'none'}")
    return root


def has_group(store: StoreLike, group: str) -> bool:
    try:
        _root_with(store, group)
    except AemgError:
        return False
    return True


def open_group(store: StoreLike, group: str, chunks: Any = "auto") -> xr.Dataset:
    """Lazy (Dask-backed, or plain with ``chunks=None``) view of one group; fails listing the groups that exist."""
    root = _root_with(store, group)
    kwargs = {} if chunks == "auto" else {"chunks": chunks}
    return xr.open_zarr(root.store, group=group, consolidated=False, **kwargs)


def open_events(tokens: StoreLike, dataset: str) -> xr.Dataset:
    """The ``events`` group of one dataset in a token store; fails saying which stage makes it."""
    try:
        return open_group(tokens, f"{dataset}/events")
    except AemgError as exc:
        raise AemgError(f"{dataset}: no events in {as_ref(tokens)}; run `aemg tokenize {dataset}` first") from exc


def open_arrays(store: StoreLike, group: str) -> zarr.Group:
    """The group's Zarr arrays for direct slicing (a task inside Dask reads without Dask)."""
    return _root_with(store, group)[group]


def open_tree(store: StoreLike, snapshot: str | None = None) -> xr.DataTree:
    """The whole store as an xarray DataTree, at main's tip or at ``snapshot`` (an id or a tag)."""
    ref = as_ref(store)
    if snapshot is not None:
        ref = StoreRef(ref.url, snapshot)
    return xr.open_datatree(read_session(ref).store, engine="zarr", consolidated=False)


def history(store: StoreLike) -> list[dict[str, Any]]:
    """The snapshots of main, newest first: id, time, message and the datasets each one wrote."""
    repo = open_repository(store)
    tags: dict[str, list[str]] = {}
    for tag in repo.list_tags():
        tags.setdefault(repo.lookup_tag(tag), []).append(tag)
    rows = []
    for info in repo.ancestry(branch=MAIN):
        meta = info.metadata or {}
        if meta.get("aemg_step") == "prepare":  # the arrays a worker write starts from; never main's tip
            continue
        rows.append({"snapshot": info.id, "time": info.written_at.isoformat(timespec="seconds"),
                     "message": info.message, "datasets": meta.get("dataset", ""),
                     "tags": ",".join(sorted(tags.get(info.id, [])))})
    return rows


@dataclass
class Published:
    """What a publish did: the snapshot now at main's tip, and the concurrent commits it was rebased over."""

    snapshot: str
    rebased_over: str | None = None


@dataclass
class ForkWriter:
    """A picklable handle through which one Dask task writes its rows of a group's arrays.

    The task owns rows ``span`` along the first axis of the arrays it writes (all chunked by
    ``chunk`` rows). Chunks wholly inside its span it writes itself, through its fork of the
    transaction (``session``); rows of a chunk it shares with another task (or, while the arrays
    still grow, the last partial chunk: ``total`` is None) go back in ``edges`` and the driver
    writes them, a whole chunk at a time: two forks writing one chunk would each store their own
    copy of it and the merge would keep only one. A task that owns no chunk gets no fork at all.
    """

    session: icechunk.ForkSession | None
    group: str
    span: tuple[int, int]
    chunk: int
    total: int | None
    edges: list[tuple[str, int, np.ndarray]] = field(default_factory=list)

    @property
    def owned(self) -> tuple[int, int]:
        """The rows of the chunks this task writes itself (empty when ``lo >= hi``)."""
        lo, hi = self.span
        return -(-lo // self.chunk) * self.chunk, hi if hi == self.total else hi // self.chunk * self.chunk

    def write(self, path: str, start: int, values: np.ndarray) -> None:
        """``values`` as rows ``start:start + len(values)`` of array ``<group>/<path>``."""
        own_lo, own_hi = self.owned
        stop = start + len(values)
        a, b = max(start, own_lo), min(stop, own_hi)
        if a < b:
            assert self.session is not None
            array = zarr.open_array(self.session.store, path=f"{self.group}/{path}", mode="r+")
            array[a:b] = values[a - start:b - start]
        else:
            a = b = start
        for s, e in ((start, a), (b, stop)):
            if s < e:
                self.edges.append((path, s, np.array(values[s - start:e - start])))


class EdgeRows:
    """Rows the driver writes (see :class:`ForkWriter`), held until they fill a chunk, so every
    chunk is written once and never read back and rewritten piece by piece."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}

    def add(self, path: str, start: int, values: np.ndarray, chunk: int) -> list[tuple[str, int, np.ndarray]]:
        """Take rows; return the chunks they complete as (path, first row, rows)."""
        done = []
        while len(values):
            index = start // chunk
            n = min(len(values), (index + 1) * chunk - start)
            pieces = self.pending.setdefault((path, index), [])
            pieces.append((start, values[:n]))
            if sum(len(v) for _, v in pieces) == chunk:
                done.append(self._join(path, index))
            start, values = start + n, values[n:]
        return done

    def _join(self, path: str, index: int) -> tuple[str, int, np.ndarray]:
        pieces = sorted(self.pending.pop((path, index)), key=lambda p: p[0])
        return path, pieces[0][0], np.concatenate([v for _, v in pieces])

    def rest(self) -> list[tuple[str, int, np.ndarray]]:
        """The partial chunks still held (the arrays' last ones), at the end of the write."""
        return [self._join(path, index) for path, index in sorted(self.pending)]


class GroupWrite:
    """One open write of a group on a private branch (see the module docstring)."""

    def __init__(self, repo: icechunk.Repository, ref: StoreRef, group: str) -> None:
        self.repo, self.ref, self.group = repo, ref, group
        self.base = repo.lookup_branch(MAIN)
        self.branch = f"{WRITE_BRANCH}{datetime.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        repo.create_branch(self.branch, self.base)
        self.session = repo.writable_session(self.branch)
        self.edges = EdgeRows()
        self.published: Published | None = None

    @property
    def store(self) -> icechunk.IcechunkStore:
        return self.session.store

    def to_zarr(self, data: xr.Dataset | xr.DataTree, mode: str = "w", encoding: dict | None = None,
                path: str = "", **kwargs: Any) -> None:
        """Write ``data`` as this group, or its subgroup ``path`` (``mode="w"`` replaces it), or append
        to it (``mode="a", append_dim=...``); ``compute=False`` writes only the metadata of Dask arrays.

        A DataTree is written node by node (xarray cannot write a tree below a store's root);
        its ``encoding`` is keyed by node path (``{"/states": {...}}``) as for ``DataTree.to_zarr``.
        """
        target = f"{self.group}/{path}" if path else self.group
        if isinstance(data, xr.DataTree):
            for node in data.subtree:  # parents first: mode "w" on the root clears the old group
                sub = node.path.strip("/")
                node.to_dataset(inherit=False).to_zarr(
                    self.store, group=f"{target}/{sub}" if sub else target, mode=mode if not sub else "w-",
                    zarr_format=3, consolidated=False, encoding=(encoding or {}).get(node.path), **kwargs)
            return
        data.to_zarr(self.store, group=target, mode=mode, zarr_format=3, consolidated=False, encoding=encoding,
                     **kwargs)

    def resize(self, path: str, n_rows: int) -> None:
        """Array ``<group>/<path>`` to ``n_rows`` along its first axis (metadata only when it grows)."""
        array = zarr.open_array(self.store, path=f"{self.group}/{path}", mode="r+")
        array.resize((n_rows, *array.shape[1:]))

    def fork(self, spans: list[tuple[int, int]], chunk: int, total: int | None) -> list[ForkWriter]:
        """One writer per worker task, task i owning rows ``spans[i]`` of arrays chunked by ``chunk``
        rows and ``total`` rows long (None while they grow). Tasks that own a whole chunk get a fork
        of the transaction, after a commit (on the private branch) of what the driver wrote so far:
        the arrays they fill."""
        writers = [ForkWriter(None, self.group, span, chunk, total) for span in spans]
        if any(lo < hi for lo, hi in (w.owned for w in writers)):
            self.session.commit(f"prepare {self.group}", metadata={"aemg_step": "prepare", "dataset": self.group})
            self.session = self.repo.writable_session(self.branch)
            for w in writers:
                w.session = self.session.fork() if w.owned[0] < w.owned[1] else None
        return writers

    def merge(self, writers: list[ForkWriter]) -> None:
        """The workers' chunks into this write; the rows they shared are written a whole chunk at a time."""
        forks = [w.session for w in writers if w.session is not None]
        if forks:
            self.session.merge(*forks)
        for writer in writers:
            for path, start, values in writer.edges:
                for piece in self.edges.add(path, start, values, writer.chunk):
                    self._write(*piece)

    def _write(self, path: str, start: int, values: np.ndarray) -> None:
        zarr.open_array(self.store, path=f"{self.group}/{path}", mode="r+")[start:start + len(values)] = values

    def finish(self) -> None:
        """Write the partial chunks still held (called before the commit)."""
        for piece in self.edges.rest():
            self._write(*piece)


def _publish_lock(ref: StoreRef):
    folder = local_path(ref)
    if folder is None:
        return nullcontext()
    folder.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder.parent / f".{folder.name}.lock"), timeout=600)


async def _copy_keys(src: icechunk.IcechunkStore, dst: icechunk.IcechunkStore, group: str) -> None:
    """Every key under ``group`` from ``src`` to ``dst``, bytes as stored (no decoding): node
    metadata first, parents before children, then the chunks."""
    await dst.delete_dir(group)
    keys = [key async for key in src.list_prefix(f"{group}/")]
    metadata = sorted((k for k in keys if k.endswith("zarr.json")), key=lambda k: k.count("/"))
    for key in [*metadata, *(k for k in keys if not k.endswith("zarr.json"))]:
        value = await src.get(key, prototype=default_buffer_prototype())
        if value is not None:
            await dst.set(key, value)


def _copy_group(repo: icechunk.Repository, head: str, session: icechunk.Session, group: str) -> None:
    """Make ``group`` in ``session`` what it is in snapshot ``head``."""
    sync(_copy_keys(repo.readonly_session(snapshot_id=head).store, session.store, group))


def _publish(write: GroupWrite, head: str, message: str, metadata: dict[str, Any]) -> Published:
    repo = write.repo
    with _publish_lock(write.ref):
        try:
            repo.reset_branch(MAIN, head, from_snapshot_id=write.base)
            return Published(head)
        except icechunk.IcechunkError:
            if repo.lookup_branch(MAIN) == write.base:  # not a moved branch: a real failure
                raise
    for _ in range(PUBLISH_TRIES):
        session = repo.writable_session(MAIN)
        tip = session.snapshot_id
        _copy_group(repo, head, session, write.group)
        with _publish_lock(write.ref):
            try:
                snapshot = session.commit(message, metadata={**metadata, "rebased_over": tip},
                                          rebase_with=icechunk.ConflictDetector())
            except (icechunk.ConflictError, icechunk.RebaseFailedError):
                continue
        log.warning("%s: %s moved while %s was written; published on top of %s", write.ref.url, MAIN, write.group, tip)
        return Published(snapshot, rebased_over=tip)
    raise AemgError(f"{write.ref.url}: {write.group} could not be published after {PUBLISH_TRIES} tries: other "
                    "runs kept committing; run it again")


@contextmanager
def group_writer(
    store: StoreLike,
    group: str,
    *,
    validate: Callable[[xr.Dataset | xr.DataTree], None] | None = None,
    tree: bool = False,
    message: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Iterator[GroupWrite]:
    """Yield a :class:`GroupWrite` for ``group``; commit, validate and publish it on a clean exit.

    On any failure (the body's, or ``validate``'s, which sees the group read back as a DataTree when
    ``tree``, else as a Dataset) main is left as it was. After the block, ``.published`` says
    which snapshot now holds the group.
    """
    _check_group_name(group)
    ref = as_ref(store)
    if ref.snapshot is not None:
        raise AemgError(f"{ref}: a pinned snapshot is read-only; write to {ref.url}")
    repo = open_repository(ref, create=True)
    write = GroupWrite(repo, ref, group)
    message = message or f"write {group}"
    metadata = {"dataset": group, **(metadata or {})}
    try:
        yield write
        write.finish()
        head = write.session.commit(message, metadata=metadata)
        if validate is not None:
            session = repo.readonly_session(snapshot_id=head)
            if tree:
                validate(xr.open_datatree(session.store, engine="zarr", consolidated=False, group=group))
            else:
                validate(xr.open_zarr(session.store, group=group, consolidated=False))
        write.published = _publish(write, head, message, metadata)
    finally:
        repo.delete_branch(write.branch)


def publish_group(
    store: StoreLike,
    group: str,
    data: xr.Dataset | xr.DataTree,
    *,
    validate: Callable[[xr.Dataset | xr.DataTree], None] | None = None,
    encoding: dict | None = None,
    message: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Published:
    """Write ``data`` as ``group`` in one transaction, replacing any previous version."""
    with group_writer(store, group, validate=validate, tree=isinstance(data, xr.DataTree), message=message,
                      metadata=metadata) as write:
        write.to_zarr(data, encoding=encoding)
    assert write.published is not None
    return write.published


def _check_group_name(group: str) -> None:
    if not group or "/" in group or "\\" in group or group in (".", "..") or group.startswith("."):
        raise ValueError(f"group name {group!r} must be one path component, e.g. a dataset id")
