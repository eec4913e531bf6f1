"""Streaming harmonization: output independent of how it is streamed, memory flat, kill -9 safe.

A synthetic ``int16-dat`` dataset (many small files, no resampling, so the output is as large as
the input) makes the effects measurable in a unit test; the real slices check the output itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from test_faults_common import HOSTILE, HP, builtin_spec, copy_valid_store, fingerprint, siblings, spec_mapping

from aemg.datasets.spec import DatasetSpec, spec_from_mapping
from aemg.harmonize.dataset import recording_table_from, select_files, validate_group
from aemg.harmonize.recording import harmonize_file
from aemg.harmonize.stage import harmonize_one
from aemg.store import list_groups, open_group, open_repository, open_tree

from conftest import SHARED_DATA

SYNTH = "synthetic-stream"
N_CHANS = 16


def synthetic_dataset(folder: Path, n_files: int, n_times: int = 8000) -> tuple[DatasetSpec, Path]:
    """``n_files`` int16 files of 16 channels at 1 kHz, three gestures, subjects of 4 files each."""
    rng = np.random.default_rng(n_files)
    files = {}
    for i in range(n_files):
        rel = f"data/s{i // 4}_{i}_{i % 3}.dat"
        files[rel] = rng.integers(-2000, 2000, (n_times, N_CHANS), dtype=np.int16).tobytes()
    root = folder / SYNTH
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    mapping = spec_mapping(
        files, "int16-dat", id=SYNTH, sfreq=1000, scale_to_volts=1e-6,
        pattern=r"data/s(?P<subject>\d+)_(?P<index>\d+)_(?P<gesture>\d)\.dat",
        reader_options={"n_chans": N_CHANS, "dtype": "<i2"},
        channels=[{"name": f"e{k}", "angle_deg": 22.5 * k, "distance": 0.3} for k in range(N_CHANS)],
    )
    return spec_from_mapping(mapping, "test"), root


def stream_hp(**overrides: Any) -> dict[str, Any]:
    """Native rate kept (no down-sampling), so the output grows exactly like the input."""
    return {**HP, "sfreq": 1000.0, "bandpass": [10.0, 400.0], "chunk_samples": 4096, "files_in_flight": 2, **overrides}


def test_streamed_group_equals_its_recordings_end_to_end(tmp_path: Path) -> None:
    """Real slice, small chunks (many appends, recordings straddling chunk borders): the stored
    group is exactly the per-file harmonization laid end to end, whatever the chunking."""
    spec, subjects = builtin_spec("myo-armband-cote-allard"), ["pre-Female0"]
    root = SHARED_DATA / spec.id
    hp = {**HP, "chunk_samples": 1000, "files_in_flight": 3}
    harmonize_one(spec, root, tmp_path / "a.zarr", hp, subjects)
    harmonize_one(spec, root, tmp_path / "b.zarr", {**hp, "chunk_samples": 262144, "files_in_flight": 1}, subjects)
    a = open_group(tmp_path / "a.zarr", spec.id).load()
    b = open_group(tmp_path / "b.zarr", spec.id).load()
    assert a["emg"].encoding["chunks"] == (1000, spec.n_chans) and a.sizes["sample"] > 10 * 1000
    recordings = [r for f in select_files(spec, subjects) for r in harmonize_file(spec, root, f, hp)]
    np.testing.assert_array_equal(a["emg"].values, np.concatenate([r.emg for r in recordings]))
    np.testing.assert_array_equal(a["gesture"].values, np.concatenate([r.gesture for r in recordings]))
    np.testing.assert_array_equal(a["quality"].values, np.stack([r.quality for r in recordings]))
    table = recording_table_from(a)
    assert table["n_times"].tolist() == [len(r.emg) for r in recordings]
    assert table["source_file"].tolist() == [r.relpath for r in recordings]
    for name in ("emg", "gesture", "quality", "offset", "subject", "channel", "angle_deg"):
        xr.testing.assert_identical(a[name], b[name])
    assert a.attrs["harmonize_params"] != b.attrs["harmonize_params"]  # only the streaming knobs differ


def eager_map(fn, items) -> list:
    """Like Dask's map: every result of a batch exists at once."""
    return list(map(fn, items))


def _peak_bytes(spec: DatasetSpec, root: Path, store: Path) -> int:
    tracemalloc.start()
    try:
        harmonize_one(spec, root, store, stream_hp(), map_fn=eager_map)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    small, small_root = synthetic_dataset(tmp_path / "small", 6)
    large, large_root = synthetic_dataset(tmp_path / "large", 24)
    _peak_bytes(small, small_root, tmp_path / "warm.zarr")  # first-use allocations (imports, caches)
    small_peak = _peak_bytes(small, small_root, tmp_path / "small.zarr")
    large_peak = _peak_bytes(large, large_root, tmp_path / "large.zarr")
    output = open_group(tmp_path / "large.zarr", SYNTH)["emg"].nbytes
    assert output == 24 * 8000 * N_CHANS * 4
    # holding the output would cost 3/4 of it more than the small run; streaming costs nothing more
    assert large_peak < small_peak + output / 4, (small_peak, large_peak, output)


WRITER = r'''
import sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[4]]
from test_harmonize_stream import synthetic_dataset, stream_hp
from aemg.harmonize import dataset
from aemg.harmonize.stage import harmonize_one

store, folder, marker = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
spec, root = synthetic_dataset(folder, 8)
original, calls = dataset.write_recordings, [0]

def write_recordings(recordings, writer):
    out = original(recordings, writer)
    calls[0] += 1
    if calls[0] == 3 and not marker.exists():  # three files of the group written, more to come
        marker.write_text("streaming")
        time.sleep(300)
    return out

dataset.write_recordings = write_recordings
print(harmonize_one(spec, root, store, stream_hp()))
'''


def test_kill_9_while_streaming_leaves_the_store_and_a_rerun_completes(tmp_path: Path) -> None:
    store = copy_valid_store(tmp_path)
    script, marker = tmp_path / "writer.py", tmp_path / "marker"
    script.write_text(WRITER)
    log = open(tmp_path / "writer.log", "w")
    args = [sys.executable, str(script), str(store), str(tmp_path / "raw"), str(marker), str(Path(__file__).parent)]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, (tmp_path / "writer.log").read_text()
            assert time.monotonic() < deadline, "writer never reached its third chunk"
            time.sleep(0.05)
        writing = [b for b in open_repository(store).list_branches() if b.startswith("aemg-write-")]
        assert len(writing) == 1  # the live writer's private branch
        # another writer publishes meanwhile: it must neither wait for nor remove the live write
        ds = open_group(store, HOSTILE).load()
        for var in ds.variables.values():
            var.encoding = {}
        from aemg.store import publish_group

        publish_group(store, HOSTILE, ds.assign(emg=ds["emg"] * 2), validate=validate_group)
        assert writing[0] in open_repository(store).list_branches()
        before = fingerprint(store)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert fingerprint(store) == before and SYNTH not in list_groups(store)  # nothing half-written visible
    spec, root = synthetic_dataset(tmp_path / "raw", 8)
    summary = harmonize_one(spec, root, store, stream_hp())
    assert summary["recordings"] == 8 and siblings(store) == []
    tree = open_tree(store)
    validate_group(tree[SYNTH].to_dataset(), N_CHANS)
    assert tree[SYNTH].sizes["sample"] == 8 * 8000


@pytest.mark.parametrize("n_chans", [N_CHANS, 3])
def test_group_disagreeing_with_its_table_is_refused(n_chans: int, tmp_path: Path) -> None:
    spec, root = synthetic_dataset(tmp_path, 2, n_times=500)
    harmonize_one(spec, root, tmp_path / "s.zarr", stream_hp())
    ds = open_group(tmp_path / "s.zarr", SYNTH).load()
    if n_chans == N_CHANS:  # one sample more than the recordings account for
        ds = xr.concat([ds[["emg", "gesture"]], ds[["emg", "gesture"]].isel(sample=[0])], "sample").merge(
            ds.drop_vars(["emg", "gesture"]))
        with pytest.raises(Exception, match="recordings hold 1000 samples but emg has 1001"):
            validate_group(ds, n_chans)
    else:
        with pytest.raises(Exception, match="channel"):
            validate_group(ds, n_chans)
