"""Verified downloads: every file is checked against a sha256 before anything reads it.

Files land in ``<raw_dir>/<dataset-id>/<relative path>``. A mirror (``--mirror`` or
``AEMG_MIRROR``) replaces every origin with ``<mirror>/<dataset-id>/<relative path>``. Where a
source publishes no checksum, the first download records one in a lock file and later
downloads are verified against it.

Nothing unverified ever takes a file's place: a download goes to a temporary name beside its
target, is hashed, and only then renamed into place; an archive is unpacked and every member
checked in a temporary folder before any member moves into the dataset's folder. Hashes are
pinned in the lock file only once everything they cover has been checked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pooch
import yaml
from filelock import FileLock
from pooch.downloaders import choose_downloader
from rich.progress import Progress

from aemg.datasets.spec import DatasetSpec
from aemg.errors import DatasetError

DEFAULT_LOCK = Path("datasets.lock.yaml")
CHUNK_BYTES = 1 << 20
_LOCK_MUTEX = threading.Lock()  # threads of one download share the lock file


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_url(mirror: str | None = None) -> str | None:
    value = mirror or os.environ.get("AEMG_MIRROR") or None
    return value.rstrip("/") if value else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_lock(lock: Path, dataset: str = "?") -> dict[str, dict[str, str]]:
    if not lock.exists():
        return {}
    try:
        entries = yaml.safe_load(lock.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(
            dataset, f"cannot read the hash lock file: {_first_line(exc)}", file=str(lock),
            fix="restore the lock file from version control",
        ) from None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise DatasetError(
            dataset, "the hash lock file is not a mapping of dataset -> {file: sha256}", file=str(lock),
            fix="restore the lock file from version control",
        )
    return entries


def _record_lock(lock: Path, dataset: str, key: str, digest: str) -> None:
    """Pin ``digest`` for ``dataset``/``key``; safe across threads and processes."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    # the mutex file lives outside the working tree: the lock file itself is committed
    mutex = Path(tempfile.gettempdir()) / f"aemg-{hashlib.sha256(str(lock.resolve()).encode()).hexdigest()[:16]}.lock"
    with _LOCK_MUTEX, FileLock(str(mutex)):
        entries = _read_lock(lock, dataset)
        entries.setdefault(dataset, {})[key] = digest
        tmp = lock.with_name(lock.name + ".tmp")
        tmp.write_text(yaml.safe_dump(entries, sort_keys=True))
        tmp.replace(lock)


def _expected(spec: DatasetSpec, key: str, declared: str | None, lock: Path) -> str | None:
    return declared or _read_lock(lock, spec.id).get(spec.id, {}).get(key)


def _mismatch(spec: DatasetSpec, key: str, actual: str, expected: str, what: str) -> DatasetError:
    return DatasetError(
        spec.id,
        f"sha256 mismatch (got {actual[:12]}…, expected {expected[:12]}…), {what}",
        file=key,
        fix="check the mirror or source; never edit the expected hash to match",
    )


def _fetch(spec: DatasetSpec, url: str, target: Path, sha256: str | None, key: str) -> str:
    """Download ``url`` to ``target`` unless a verified copy is there; returns the file's sha256.

    The bytes go to a temporary file beside ``target`` and are hashed before the rename, so a
    wrong or partial download never takes the target's place. A target that fails its hash is
    removed: nothing downstream may read it. With ``sha256=None`` (no published checksum) the
    file is always fetched afresh, so the hash the caller pins is the source's, not a local
    copy's.
    """
    if sha256 is not None and target.is_file() and sha256_of(target) == sha256:
        return sha256
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        try:
            downloader = choose_downloader(url, progressbar=False)
            if isinstance(downloader, pooch.HTTPDownloader):
                downloader.chunk_size = CHUNK_BYTES
            downloader(url, str(part), None)
        except Exception as exc:  # network errors come in many types (requests, OSError, ValueError)
            raise DatasetError(
                spec.id, f"download from {url} failed: {_first_line(exc)}", file=key,
                fix="check the URL or the mirror (it must serve <mirror>/<dataset-id>/<file>) and the network",
            ) from None
        actual = sha256_of(part)
        if sha256 is not None and actual != sha256:
            target.unlink(missing_ok=True)
            raise _mismatch(spec, key, actual, sha256, "download discarded")
        if sha256 is None and part.stat().st_size == 0:
            raise DatasetError(
                spec.id, f"{url} returned an empty file; its hash was not pinned", file=key,
                fix="check the source; pin a sha256 in the spec once the file is right",
            )
        os.replace(part, target)
        return actual
    finally:
        part.unlink(missing_ok=True)


def _archive_name(url: str) -> str:
    return Path(urlparse(url).path).name or "archive"


def _safe_extract(spec: DatasetSpec, archive: Path, dest: Path, name: str | None = None) -> None:
    """Unpack a zip refusing members that would land outside ``dest`` (zip-slip)."""
    name = name or archive.name
    root = dest.resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                out = (root / member.filename).resolve()
                if root not in out.parents and out != root:
                    raise DatasetError(
                        spec.id, f"archive member {member.filename!r} escapes the target folder; nothing was extracted",
                        file=name, fix="the archive is unsafe: get it from the official source",
                    )
            zf.extractall(root)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError) as exc:
        raise DatasetError(
            spec.id, f"corrupt or truncated archive ({type(exc).__name__}: {_first_line(exc)})", file=name,
            fix="delete it and download again; if it persists the source is damaged",
        ) from None


def _verify(spec: DatasetSpec, root: Path, relpath: str, lock: Path) -> None:
    """Check a manually placed file; it is kept (the user placed it), but nothing reads it."""
    path = root / relpath
    if not path.is_file():
        raise DatasetError(spec.id, "missing after download", file=relpath)
    expected = _expected(spec, relpath, spec.files[relpath], lock)
    actual = sha256_of(path)
    if expected is None:
        _record_lock(lock, spec.id, relpath, actual)
    elif actual != expected:
        raise DatasetError(
            spec.id, f"sha256 mismatch (got {actual[:12]}…, expected {expected[:12]}…)", file=relpath,
            fix=f"replace {path} with the original file. {spec.manual_instructions}".strip(),
        )


def adopt_older_layouts(spec: DatasetSpec, root: Path, wanted: list[str]) -> None:
    """Link files a user placed under an older release's names (``spec.older_layouts``) to their listed paths.

    Hard links (a copy across file systems): the user's folders stay as they are, and every later
    step, sha256 check included, sees one layout.
    """
    for relpath in wanted:
        target = root / relpath
        if target.exists():
            continue
        for pattern, replacement in spec.older_layouts:
            older = re.sub(pattern, replacement, relpath)
            if older != relpath and (root / older).is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(root / older, target)
                except OSError:
                    shutil.copy2(root / older, target)
                break


def manual_error(spec: DatasetSpec, root: Path, missing: list[str]) -> DatasetError:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return DatasetError(
        spec.id,
        f"access is manual and {len(missing)} file(s) are missing: {shown}",
        fix=f"{spec.manual_instructions} Place the files under {root}/ keeping their relative paths.".strip(),
    )


def download(
    spec: DatasetSpec,
    raw_dir: Path,
    *,
    mirror: str | None = None,
    files: list[str] | None = None,
    lock: Path = DEFAULT_LOCK,
    workers: int = 8,
) -> Path:
    """Fetch and verify ``files`` (default: all) of a dataset; returns the dataset's folder."""
    root = Path(raw_dir) / spec.id
    wanted = sorted(spec.files) if files is None else files
    unknown = sorted(set(wanted) - set(spec.files))
    if unknown:
        raise DatasetError(spec.id, f"files not in the spec: {unknown[:3]}", fix="list them under the spec's 'files'")
    base = mirror_url(mirror)
    if spec.access == "manual" and base is None:
        adopt_older_layouts(spec, root, wanted)
        missing = [p for p in wanted if not (root / p).exists()]
        if missing:
            raise manual_error(spec, root, missing)
        for relpath in wanted:
            _verify(spec, root, relpath, lock)
        return root
    if base is None and spec.archive is not None:
        _download_archive(spec, root, wanted, lock)
        return root
    origin = f"{base}/{spec.id}/" if base else spec.base_url
    if origin is None:
        raise DatasetError(spec.id, "no download origin", fix="give the spec a 'base_url' or pass --mirror")
    expected = {relpath: _expected(spec, relpath, spec.files[relpath], lock) for relpath in wanted}
    with Progress(transient=True) as progress, ThreadPoolExecutor(workers) as pool:
        task = progress.add_task(f"download {spec.id}", total=len(wanted))
        jobs = {
            relpath: pool.submit(_fetch, spec, origin + relpath, root / relpath, expected[relpath], relpath)
            for relpath in wanted
        }
        for relpath, job in jobs.items():
            digest = job.result()
            if expected[relpath] is None:
                _record_lock(lock, spec.id, relpath, digest)
            progress.advance(task)
    return root


def _download_archive(spec: DatasetSpec, root: Path, wanted: list[str], lock: Path) -> None:
    """Fetch the archive, unpack and check every wanted member, then move them into ``root``."""
    archive = spec.archive
    assert archive is not None
    name = _archive_name(archive.url)
    expected = {p: _expected(spec, p, spec.files[p], lock) for p in wanted}
    if all(expected[p] is not None and (root / p).is_file() and sha256_of(root / p) == expected[p] for p in wanted):
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{spec.id}.archive-") as tmp:
        zip_path = Path(tmp) / "archive.zip"
        archive_sha = _expected(spec, "archive", archive.sha256, lock)
        actual_archive = _fetch(spec, archive.url, zip_path, archive_sha, name)
        unpacked = Path(tmp) / "unpacked"
        _safe_extract(spec, zip_path, unpacked, name)
        base = (unpacked / archive.member_prefix).resolve()
        digests: dict[str, str] = {}
        for relpath in wanted:
            src = (base / relpath).resolve()
            if unpacked.resolve() not in src.parents or not src.is_file():
                raise DatasetError(
                    spec.id, f"not found in the archive {name} (looked for {archive.member_prefix}{relpath})",
                    file=relpath, fix="check the spec's archive 'member_prefix' and 'files'",
                )
            digests[relpath] = sha256_of(src)
            if expected[relpath] is not None and digests[relpath] != expected[relpath]:
                raise _mismatch(spec, relpath, digests[relpath], expected[relpath], f"archive {name} not unpacked")
        for relpath in wanted:  # every member checked: only now does anything land in root
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(base / relpath, root / relpath)
    if archive_sha is None:
        _record_lock(lock, spec.id, "archive", actual_archive)
    for relpath in wanted:
        if expected[relpath] is None:
            _record_lock(lock, spec.id, relpath, digests[relpath])
