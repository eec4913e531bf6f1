"""Verified downloads: every file is checked against a sha256 before anything reads it.

Files land in ``<raw_dir>/<dataset-id>/<relative path>``. A mirror (``--mirror`` or
``AEMG_MIRROR``) replaces every origin with ``<mirror>/<dataset-id>/<relative path>``. Where a
source publishes no checksum, the first download records one in a lock file and later
downloads are verified against it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pooch
import yaml
from rich.progress import Progress

from aemg.datasets.spec import DatasetSpec
from aemg.errors import DatasetError

DEFAULT_LOCK = Path("datasets.lock.yaml")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_url(mirror: str | None = None) -> str | None:
    value = mirror or os.environ.get("AEMG_MIRROR") or None
    return value.rstrip("/") if value else None


def _read_lock(lock: Path) -> dict[str, dict[str, str]]:
    return (yaml.safe_load(lock.read_text()) or {}) if lock.exists() else {}


def _record_lock(lock: Path, dataset: str, key: str, digest: str) -> None:
    entries = _read_lock(lock)
    entries.setdefault(dataset, {})[key] = digest
    tmp = lock.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(entries, sort_keys=True))
    tmp.replace(lock)


def _expected(spec: DatasetSpec, key: str, declared: str | None, lock: Path) -> str | None:
    return declared or _read_lock(lock).get(spec.id, {}).get(key)


def _fetch(spec: DatasetSpec, url: str, target: Path, sha256: str | None, lock: Path, key: str) -> None:
    """Download one file to ``target``; pooch deletes it again when the hash does not match."""
    if target.exists() and sha256 is not None and sha256_of(target) == sha256:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        pooch.retrieve(
            url,
            known_hash=None if sha256 is None else f"sha256:{sha256}",
            fname=target.name,
            path=target.parent,
            progressbar=False,
        )
    except ValueError as exc:  # pooch reports a hash mismatch as ValueError
        target.unlink(missing_ok=True)
        raise DatasetError(
            spec.id,
            f"sha256 mismatch, file discarded ({str(exc).splitlines()[0]})",
            file=key,
            fix="check the mirror or source; never edit the expected hash to match",
        ) from None
    except Exception as exc:  # network errors come in many types (requests, OSError)
        raise DatasetError(spec.id, f"download from {url} failed: {exc}", file=key) from None
    if sha256 is None:
        _record_lock(lock, spec.id, key, sha256_of(target))


def _safe_extract(spec: DatasetSpec, archive: Path, dest: Path) -> None:
    """Unpack a zip refusing members that would land outside ``dest`` (zip-slip)."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                out = (root / member.filename).resolve()
                if root not in out.parents and out != root:
                    raise DatasetError(
                        spec.id, f"archive member {member.filename!r} escapes the target folder",
                        file=archive.name,
                    )
            zf.extractall(root)
    except zipfile.BadZipFile as exc:
        raise DatasetError(spec.id, f"corrupt or truncated archive: {exc}", file=archive.name) from None


def _verify(spec: DatasetSpec, root: Path, relpath: str, lock: Path) -> None:
    path = root / relpath
    if not path.exists():
        raise DatasetError(spec.id, "missing after download", file=relpath)
    expected = _expected(spec, relpath, spec.files[relpath], lock)
    actual = sha256_of(path)
    if expected is None:
        _record_lock(lock, spec.id, relpath, actual)
    elif actual != expected:
        path.unlink()
        raise DatasetError(spec.id, f"sha256 mismatch (got {actual[:12]}…, expected {expected[:12]}…), file discarded", file=relpath)


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
    root = raw_dir / spec.id
    wanted = sorted(spec.files) if files is None else files
    unknown = sorted(set(wanted) - set(spec.files))
    if unknown:
        raise DatasetError(spec.id, f"files not in the spec: {unknown[:3]}")
    base = mirror_url(mirror)
    if spec.access == "manual" and base is None:
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
    with Progress(transient=True) as progress, ThreadPoolExecutor(workers) as pool:
        task = progress.add_task(f"download {spec.id}", total=len(wanted))
        jobs = [
            pool.submit(
                _fetch, spec, origin + relpath, root / relpath,
                _expected(spec, relpath, spec.files[relpath], lock), lock, relpath,
            )
            for relpath in wanted
        ]
        for job in jobs:
            job.result()
            progress.advance(task)
    return root


def _download_archive(spec: DatasetSpec, root: Path, wanted: list[str], lock: Path) -> None:
    archive = spec.archive
    assert archive is not None
    if all((root / p).exists() and sha256_of(root / p) == _expected(spec, p, spec.files[p], lock) for p in wanted):
        return
    with tempfile.TemporaryDirectory(dir=root.parent if root.parent.exists() else None) as tmp:
        zip_path = Path(tmp) / Path(archive.url).name
        _fetch(spec, archive.url, zip_path, _expected(spec, "archive", archive.sha256, lock), lock, "archive")
        unpacked = Path(tmp) / "unpacked"
        _safe_extract(spec, zip_path, unpacked)
        for relpath in wanted:
            src = unpacked / archive.member_prefix / relpath
            if not src.exists():
                raise DatasetError(spec.id, "not found in the archive", file=relpath)
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, root / relpath)
    for relpath in wanted:
        _verify(spec, root, relpath, lock)
