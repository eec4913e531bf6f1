"""The harmonize stage for one dataset: download check, harmonize, publish, summarise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from aemg.datasets.download import sha256_of
from aemg.datasets.spec import DatasetSpec
from aemg.errors import AemgError, DatasetError
from aemg.harmonize.channels import channel_view
from aemg.harmonize.dataset import MapFn, select_files, spec_hash, validate_group, write_dataset
from aemg.params import params_hash
from aemg.store import StoreLike, group_writer, list_groups, open_group


def is_current(store: StoreLike, spec: DatasetSpec, raw_root: Path, hp: dict[str, Any], subjects: list[str] | None) -> bool:
    """True when the stored group was built from the same files (by hash), spec and parameters."""
    if spec.id not in list_groups(store):
        return False
    ds = open_group(store, spec.id)
    files = select_files(spec, subjects)
    stored = dict(zip(ds["source_file"].values.astype(object), ds["source_sha256"].values.astype(object), strict=True))
    if ds.attrs.get("params_hash") != params_hash(hp) or ds.attrs.get("spec_hash") != spec_hash(spec):
        return False
    if set(stored) != set(files):
        return False
    return all((raw_root / f).exists() and sha256_of(raw_root / f) == stored[f] for f in files)


def summarize(ds: xr.Dataset) -> dict[str, Any]:
    flagged = int((ds["quality"].values > 0).sum())
    return {
        "dataset": ds.attrs["dataset"],
        "subjects": len(set(ds["subject"].values.astype(object))),
        "recordings": int(ds.sizes["recording"]),
        "channels": int(ds.sizes["channel"]),
        "hours": round(ds.sizes["sample"] / ds.attrs["sfreq"] / 3600, 3),
        "flagged_channel_recordings": flagged,
    }


def harmonize_one(
    spec: DatasetSpec,
    raw_root: Path,
    store: StoreLike,
    hp: dict[str, Any],
    subjects: list[str] | None = None,
    map_fn: MapFn = map,
    only_changed: bool = False,
) -> dict[str, Any]:
    """Harmonize and commit one dataset; any failure is a one-line DatasetError, the store's main untouched.

    The commit message and metadata carry the dataset, parameters hash and spec hash, so that
    ``aemg history`` tells which run wrote which version.
    """
    try:
        if only_changed and is_current(store, spec, raw_root, hp, subjects):
            return {**summarize(open_group(store, spec.id)), "action": "unchanged"}
        n_chans = channel_view(spec, hp["virtual_channels"]).n_chans
        hashes = {"params_hash": params_hash(hp), "spec_hash": spec_hash(spec)}
        message = f"harmonize {spec.id}: params {hashes['params_hash']}, spec {hashes['spec_hash']}"
        with group_writer(store, spec.id, validate=lambda ds: validate_group(ds, n_chans), message=message,
                          metadata={"stage": "harmonize", **hashes}) as target:
            write_dataset(spec, raw_root, hp, target, subjects, map_fn)
        assert target.published is not None
        ds = open_group(store, spec.id)
    except AemgError:
        raise
    except Exception as exc:  # schema, Zarr or I/O failures still name the dataset, on one line
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else ""
        raise DatasetError(spec.id, f"harmonize failed ({type(exc).__name__}: {reason})") from exc
    return {**summarize(ds), "action": "harmonized", "snapshot": target.published.snapshot,
            **({"rebased_over": target.published.rebased_over} if target.published.rebased_over else {})}
