"""Downloads that must be refused: wrong hash, truncated or corrupt archive, zip-slip.

Nothing unverified may land in the raw folder, and no hash may be pinned from a bad download.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from test_faults_common import (
    GOOD_FILES,
    HOSTILE,
    assert_one_line,
    builtin_spec,
    csv_bytes,
    good_csv_rows,
    spec_mapping,
)

from aemg.datasets.download import download
from aemg.datasets.spec import spec_from_mapping
from aemg.errors import DatasetError

from conftest import serve_directory

UNIBO = "unibo-inail"
UNIBO_FILES = ["data/user_1_day_1_posture_1.mat", "data/user_1_day_1_posture_2.mat"]
ZIP_NAME = "hostile-v1.zip"
PREFIX = "hostile-v1/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("served")
    server, url = serve_directory(folder)
    yield folder, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def served(server: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """An empty folder served over loopback HTTP; no mirror set (archives download directly)."""
    monkeypatch.delenv("AEMG_MIRROR", raising=False)
    root, url = server
    folder = root / tmp_path.name
    folder.mkdir()
    return folder, f"{url}/{folder.name}"


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def lock_entries(lock: Path) -> dict:
    return (yaml.safe_load(lock.read_text()) or {}) if lock.exists() else {}


# ---- wrong hash from a mirror ---------------------------------------------------------------


def test_mirror_serving_a_modified_file_is_refused(tmp_path: Path, shared_data: Path) -> None:
    mirror = tmp_path / "mirror"
    for rel in UNIBO_FILES:
        (mirror / UNIBO / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / UNIBO / rel, mirror / UNIBO / rel)
    flip_byte(mirror / UNIBO / UNIBO_FILES[1])
    server, url = serve_directory(mirror)
    raw, lock = tmp_path / "raw", tmp_path / "datasets.lock.yaml"
    try:
        with pytest.raises(DatasetError) as err:
            download(builtin_spec(UNIBO), raw, mirror=url, files=UNIBO_FILES, lock=lock)
        assert_one_line(
            str(err.value), f"{UNIBO}: {UNIBO_FILES[1]}: sha256 mismatch", "expected 0c6648371daf", "download discarded",
            "Fix: check the mirror or source",
        )
        assert files_under(raw) == [f"{UNIBO}/{UNIBO_FILES[0]}"]  # the good file, no partial download
        assert (raw / UNIBO / UNIBO_FILES[0]).read_bytes() == (shared_data / UNIBO / UNIBO_FILES[0]).read_bytes()
        # a bad copy already in the raw folder is not trusted either: it is fetched, refused, removed
        shutil.copyfile(mirror / UNIBO / UNIBO_FILES[1], raw / UNIBO / UNIBO_FILES[1])
        with pytest.raises(DatasetError, match="sha256 mismatch"):
            download(builtin_spec(UNIBO), raw, mirror=url, files=UNIBO_FILES, lock=lock)
        assert files_under(raw) == [f"{UNIBO}/{UNIBO_FILES[0]}"]
        assert not lock.exists()  # declared hashes are never re-pinned
    finally:
        server.shutdown()
        server.server_close()


def test_missing_file_on_the_mirror_names_the_url(tmp_path: Path, served: tuple[Path, str]) -> None:
    _, url = served
    with pytest.raises(DatasetError) as err:
        download(builtin_spec(UNIBO), tmp_path / "raw", mirror=url, files=UNIBO_FILES[:1], lock=tmp_path / "lock.yaml")
    assert_one_line(str(err.value), f"{UNIBO}: {UNIBO_FILES[0]}: download from {url}/{UNIBO}/{UNIBO_FILES[0]} failed", "404", "Fix: ")
    assert files_under(tmp_path / "raw") == []


def test_unpinned_file_is_pinned_on_first_download_then_verified(tmp_path: Path, served: tuple[Path, str]) -> None:
    folder, url = served
    files = {f"data/s1_{i}.csv": csv_bytes(good_csv_rows(20 + i, 1)) for i in range(1, 5)}
    for rel, content in files.items():
        (folder / HOSTILE / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / HOSTILE / rel).write_bytes(content)
    spec = spec_from_mapping(spec_mapping(dict.fromkeys(files), base_url=f"{url}/{HOSTILE}/"), "test")
    lock = tmp_path / "datasets.lock.yaml"
    download(spec, tmp_path / "raw1", lock=lock)
    assert lock_entries(lock) == {HOSTILE: {rel: hashlib.sha256(c).hexdigest() for rel, c in files.items()}}
    (folder / HOSTILE / "data/s1_2.csv").write_bytes(csv_bytes(good_csv_rows(150, 0)))  # the source changes
    with pytest.raises(DatasetError) as err:
        download(spec, tmp_path / "raw2", lock=lock)
    assert_one_line(str(err.value), f"{HOSTILE}: data/s1_2.csv: sha256 mismatch", "download discarded")
    assert f"{HOSTILE}/data/s1_2.csv" not in files_under(tmp_path / "raw2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datasets.lock.yaml", "raw1", "raw2"]  # no stray files


def test_parallel_downloads_pin_into_one_lock_file(tmp_path: Path, served: tuple[Path, str]) -> None:
    """The harmonize flow downloads datasets in parallel tasks: no pinned hash may be lost."""
    folder, url = served
    specs = []
    for name in ("hostile-a", "hostile-b", "hostile-c"):
        files = {f"data/s1_{i}.csv": csv_bytes(good_csv_rows(20 + i, 1)) for i in range(1, 13)}
        for rel, content in files.items():
            (folder / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / name / rel).write_bytes(content)
        specs.append(spec_from_mapping(spec_mapping(dict.fromkeys(files), id=name, base_url=f"{url}/{name}/"), "test"))
    lock = tmp_path / "datasets.lock.yaml"
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda spec: download(spec, tmp_path / "raw", lock=lock), specs))
    assert {name: len(pins) for name, pins in lock_entries(lock).items()} == {
        "hostile-a": 12, "hostile-b": 12, "hostile-c": 12
    }


def test_empty_download_is_never_pinned(tmp_path: Path, served: tuple[Path, str]) -> None:
    folder, url = served
    (folder / HOSTILE / "data").mkdir(parents=True)
    (folder / HOSTILE / "data/s1_1.csv").write_bytes(b"")
    spec = spec_from_mapping(spec_mapping({"data/s1_1.csv": None}, base_url=f"{url}/{HOSTILE}/"), "test")
    lock = tmp_path / "datasets.lock.yaml"
    with pytest.raises(DatasetError) as err:
        download(spec, tmp_path / "raw", lock=lock)
    assert_one_line(str(err.value), f"{HOSTILE}: data/s1_1.csv: ", "returned an empty file; its hash was not pinned")
    assert lock_entries(lock) == {} and files_under(tmp_path / "raw") == []


# ---- archives -------------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


GOOD_MEMBERS = {PREFIX + rel: content for rel, content in GOOD_FILES.items()}


def archive_spec(url: str, archive_sha: str | None, pinned_files: bool = True):
    files = GOOD_FILES if pinned_files else dict.fromkeys(GOOD_FILES)
    archive = {"url": f"{url}/{ZIP_NAME}", "sha256": archive_sha, "member_prefix": PREFIX}
    return spec_from_mapping(spec_mapping(files, archive=archive, base_url=None), "test")


def test_good_archive_unpacks_and_pins(tmp_path: Path, served: tuple[Path, str]) -> None:
    """Control for the archive faults below: the same path with a good archive works."""
    folder, url = served
    data = zip_bytes(GOOD_MEMBERS, zipfile.ZIP_DEFLATED)
    (folder / ZIP_NAME).write_bytes(data)
    lock = tmp_path / "datasets.lock.yaml"
    root = download(archive_spec(url, None, pinned_files=False), tmp_path / "raw", lock=lock)
    assert {rel: (root / rel).read_bytes() for rel in GOOD_FILES} == GOOD_FILES
    assert files_under(tmp_path / "raw") == [f"{HOSTILE}/{rel}" for rel in sorted(GOOD_FILES)]
    assert lock_entries(lock)[HOSTILE]["archive"] == hashlib.sha256(data).hexdigest()


def _corrupt_member(data: bytes) -> bytes:
    """Flip one byte inside the first member's (stored) data: the CRC no longer matches."""
    at = data.index(GOOD_FILES["data/s1_1.csv"][:40]) + 100
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


GOOD_ZIP = zip_bytes(GOOD_MEMBERS)
ARCHIVE_CASES = {
    # name: (archive bytes, pin the archive's hash?, file named in the error, reason parts)
    "truncated-pinned": (GOOD_ZIP[: len(GOOD_ZIP) // 2], True, ZIP_NAME, ["sha256 mismatch", "download discarded"]),
    "truncated-unpinned": (GOOD_ZIP[: len(GOOD_ZIP) // 2], False, ZIP_NAME,
                           ["corrupt or truncated archive (BadZipFile: File is not a zip file)", "Fix: "]),
    "corrupt-member": (_corrupt_member(GOOD_ZIP), False, ZIP_NAME, ["corrupt or truncated archive", "Bad CRC-32"]),
    "zip-slip-relative": (zip_bytes({**GOOD_MEMBERS, "../../evil.csv": b"pwned"}), False, ZIP_NAME,
                          ["archive member '../../evil.csv' escapes the target folder", "nothing was extracted"]),
    "zip-slip-absolute": (zip_bytes({**GOOD_MEMBERS, "/tmp/aemg-faults-evil.csv": b"pwned"}), False, ZIP_NAME,
                          ["escapes the target folder"]),
    "member-missing": (zip_bytes({PREFIX + "data/s1_1.csv": GOOD_FILES["data/s1_1.csv"]}), False, "data/s1_2.csv",
                       [f"not found in the archive {ZIP_NAME}", "Fix: check the spec's archive"]),
    "member-hash": (zip_bytes({**GOOD_MEMBERS, PREFIX + "data/s1_2.csv": b"time,c1,c2,class\n0,1,1,1\n"}), False,
                    "data/s1_2.csv", ["sha256 mismatch", f"archive {ZIP_NAME} not unpacked"]),
}


@pytest.mark.parametrize("case", list(ARCHIVE_CASES))
def test_bad_archive_is_refused_and_nothing_lands(case: str, tmp_path: Path, served: tuple[Path, str]) -> None:
    data, pin, named, reason = ARCHIVE_CASES[case]
    folder, url = served
    (folder / ZIP_NAME).write_bytes(data)
    lock = tmp_path / "datasets.lock.yaml"
    spec = archive_spec(url, hashlib.sha256(GOOD_ZIP).hexdigest() if pin else None)
    with pytest.raises(DatasetError) as err:
        download(spec, tmp_path / "raw", lock=lock)
    assert_one_line(str(err.value), f"{HOSTILE}: {named}: ", *reason)
    assert files_under(tmp_path / "raw") == []  # no member, no temporary folder left behind
    assert lock_entries(lock) == {}  # a bad archive's hash is never pinned
    assert [p for p in tmp_path.rglob("*evil*")] == [] and not Path("/tmp/aemg-faults-evil.csv").exists()
