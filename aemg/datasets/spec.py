"""A dataset is a frozen spec (this module) plus one reader (``aemg.harmonize.readers``).

Built-in datasets and user datasets dropped into ``datasets.d/`` share one YAML schema, so a
new dataset needs no code. Parsing collects *every* mistake of a spec before failing, because
a user fixing a YAML file one error per run is a user who gives up.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aemg.datasets.formats import FORMATS
from aemg.errors import DatasetError
from aemg.vocabulary import GESTURES

ACCESS_KINDS = ("open", "manual")
SIGNAL_KINDS = ("emg", "envelope")
PATTERN_FIELDS = ("subject", "session", "gesture", "repetition", "index", "part")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DATASET_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
KNOWN_KEYS = frozenset(
    "id title citation doi licence access device format sfreq units scale_to_volts signal channels gestures "
    "pattern parts user_gestures reader_checked older_layouts n_subjects files file_grid base_url archive urls reader_options quirks manual_instructions".split()
)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader parses large specs 7x faster


@dataclass(frozen=True)
class Channel:
    """One electrode; position in the shared forearm frame (angle around, fraction along)."""

    name: str
    angle_deg: float
    distance: float
    muscle: str = ""


@dataclass(frozen=True)
class Archive:
    """An official download that packs the dataset's files (members are ``DatasetSpec.files``)."""

    url: str
    sha256: str | None
    member_prefix: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    title: str
    citation: str
    doi: str
    licence: str
    access: str
    device: str
    format: str
    sfreq: float
    units: str
    scale_to_volts: float | None
    signal: str
    channels: tuple[Channel, ...]
    gestures: Mapping[int, str]
    pattern: str
    n_subjects: int
    files: Mapping[str, str | None]
    base_url: str | None = None
    archive: Archive | None = None
    reader_options: Mapping[str, Any] = field(default_factory=dict)
    quirks: tuple[str, ...] = ()
    manual_instructions: str = ""
    urls: tuple[str, ...] = ()
    parts: Mapping[str, str] = field(default_factory=dict)
    older_layouts: tuple[tuple[str, str], ...] = ()  # (regex on a listed path, replacement: its older name)
    user_gestures: tuple[str, ...] = ()  # names this spec adds to the user vocabulary (datasets.d/ only)
    reader_checked: bool = False  # the reader has run on the dataset's real files (not only on fixtures)
    source: str = "builtin"

    @property
    def n_chans(self) -> int:
        return len(self.channels)

    @property
    def ch_names(self) -> list[str]:
        return [c.name for c in self.channels]

    def match(self, relpath: str) -> dict[str, str] | None:
        """Fields (subject, session, gesture, repetition, index) a data file's path yields.

        A dataset published in parts whose subject names repeat (Myo: ``PreTrainingDataset/Male0`` and
        ``EvaluationDataset/Male0`` are different people) captures the part too: the subject id then
        carries it (``pre-Male0``), so two people never share an id anywhere downstream.
        """
        m = re.fullmatch(self.pattern, relpath)
        if m is None:
            return None
        fields = {k: v for k, v in m.groupdict().items() if v is not None}
        part = fields.pop("part", None)
        if part is not None:
            fields["subject"] = f"{self.parts.get(part, part)}-{fields['subject']}"
        return fields

    def data_files(self) -> list[str]:
        """Files that hold signals (matched by the pattern), in a stable order."""
        return sorted(p for p in self.files if self.match(p) is not None)


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], errors: list[str]):
    if key not in data:
        errors.append(f"missing key '{key}'")
        return None
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        errors.append(f"'{key}' must be {names}, got {type(value).__name__} {value!r}")
        return None
    return value


def _channels(raw: Any, errors: list[str]) -> tuple[Channel, ...]:
    if not isinstance(raw, list) or not raw:
        errors.append("'channels' must be a non-empty list of {name, angle_deg, distance, muscle}")
        return ()
    channels = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or "name" not in item:
            errors.append(f"channels[{i}] must be a mapping with at least 'name'")
            continue
        try:
            channels.append(
                Channel(
                    name=str(item["name"]),
                    angle_deg=float(item.get("angle_deg", float("nan"))),
                    distance=float(item.get("distance", float("nan"))),
                    muscle=str(item.get("muscle", "")),
                )
            )
        except (TypeError, ValueError) as exc:
            errors.append(f"channels[{i}]: {exc}")
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        errors.append(f"channel names must be unique, got {names}")
    return tuple(channels)


def _user_gestures(raw: Any, errors: list[str]) -> tuple[str, ...]:
    """Gesture names the shared vocabulary lacks, declared so that no class has to be mislabelled."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(n, str) and re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in raw):
        errors.append(f"'user_gestures' must be a list of snake_case names, got {raw!r}")
        return ()
    shared = sorted(set(raw) & set(GESTURES))
    if shared:
        errors.append(f"user_gestures {shared} are already in the shared vocabulary: map to them directly")
    return tuple(n for n in raw if n not in GESTURES)


def _gestures(raw: Any, errors: list[str], declared: tuple[str, ...] = ()) -> dict[int, str]:
    if not isinstance(raw, Mapping) or not raw:
        errors.append("'gestures' must map native label codes to shared gesture names")
        return {}
    out: dict[int, str] = {}
    for code, name in raw.items():
        try:
            native = int(code)
        except (TypeError, ValueError):
            errors.append(f"gesture code {code!r} is not an integer")
            continue
        if name not in GESTURES and name not in declared:
            errors.append(
                f"gesture {native}: unknown shared name {name!r} (valid: {', '.join(GESTURES)}; "
                "a name of your own must be declared under 'user_gestures')"
            )
            continue
        out[native] = name
    return out


def _files(raw: Any, errors: list[str]) -> dict[str, str | None]:
    if not isinstance(raw, Mapping) or not raw:
        errors.append("'files' must map each relative path to its sha256 (null: pin on first download)")
        return {}
    out: dict[str, str | None] = {}
    for path, digest in raw.items():
        path = str(path)
        if path.startswith("/") or ".." in Path(path).parts:
            errors.append(f"file path {path!r} must be relative and stay inside the dataset folder")
            continue
        if digest is not None and not SHA256_RE.match(str(digest)):
            errors.append(f"file {path!r}: sha256 {digest!r} is not 64 lowercase hex digits")
            continue
        out[path] = None if digest is None else str(digest)
    return out


def _expand_values(name: str, raw: Any, errors: list[str]) -> list[str]:
    """A grid axis: a list of values or an inclusive integer range written "1-43"."""
    if isinstance(raw, list) and raw:
        return [str(v) for v in raw]
    m = re.fullmatch(r"(\d+)-(\d+)", str(raw))
    if m and int(m[1]) <= int(m[2]):
        return [str(v) for v in range(int(m[1]), int(m[2]) + 1)]
    errors.append(f"file_grid value {name!r} must be a non-empty list or a range like '1-43', got {raw!r}")
    return []


def _grid_files(raw: Any, errors: list[str]) -> dict[str, None]:
    """Files of a regular layout (every subject x session x trial), hashes pinned on download.

    Spares listing tens of thousands of paths (GrabMyo has 30,702 files) one by one.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or "template" not in raw or not isinstance(raw.get("values"), Mapping):
        errors.append("'file_grid' must be a mapping with 'template' and 'values'")
        return {}
    template, axes = str(raw["template"]), raw["values"]
    names = sorted(set(re.findall(r"{(\w+)}", template)))
    missing = [n for n in names if n not in axes]
    if missing:
        errors.append(f"file_grid template uses {missing} without values")
        return {}
    values = [_expand_values(n, axes[n], errors) for n in names]
    return {template.format(**dict(zip(names, combo, strict=True))): None for combo in itertools.product(*values)}


def _older_layouts(raw: Any, errors: list[str]) -> tuple[tuple[str, str], ...]:
    """Rewrites (``re.sub`` pattern, replacement) from a listed path to its name in an older release.

    A user holding an earlier copy (CapgMyo's ``dba-preprocessed-001/`` before ``dba-s1/``) is not
    asked to rename folders: a missing file is looked up under each older name in turn.
    """
    if raw is None:
        return ()
    rules = []
    for item in raw if isinstance(raw, list) else [raw]:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(s, str) for s in item)):
            errors.append(f"'older_layouts' entries must be [regex, replacement] pairs, got {item!r}")
            continue
        try:
            re.compile(item[0])
        except re.error as exc:
            errors.append(f"older_layouts regex {item[0]!r} is invalid: {exc}")
            continue
        rules.append((item[0], item[1]))
    return tuple(rules)


def spec_from_mapping(data: Any, source: str) -> DatasetSpec:
    """Validate a parsed YAML spec; one DatasetError lists every mistake found."""
    dataset_id = data.get("id", "?") if isinstance(data, Mapping) else "?"
    if not isinstance(data, Mapping):
        raise DatasetError(str(dataset_id), "a dataset spec must be a YAML mapping", file=source)
    errors: list[str] = []
    unknown_keys = sorted(set(data) - KNOWN_KEYS)
    if unknown_keys:
        errors.append(f"unknown key(s) {unknown_keys}; valid keys: {', '.join(sorted(KNOWN_KEYS))}")
    ident = _require(data, "id", str, errors)
    if ident is not None and not DATASET_ID_RE.match(ident):
        errors.append(f"'id' {ident!r} must be lowercase letters, digits and '-'")
    fmt = _require(data, "format", str, errors)
    sfreq = _require(data, "sfreq", (int, float), errors)
    if sfreq is not None and sfreq <= 0:
        errors.append(f"'sfreq' must be positive, got {sfreq}")
    pattern = _require(data, "pattern", str, errors) or ""
    if pattern:
        try:
            groups = set(re.compile(pattern).groupindex)
            unknown = groups - set(PATTERN_FIELDS)
            if unknown:
                errors.append(f"pattern groups {sorted(unknown)} unknown; use {PATTERN_FIELDS}")
            if "subject" not in groups:
                errors.append("pattern must have a (?P<subject>...) group")
        except re.error as exc:
            errors.append(f"pattern is not a valid regular expression: {exc}")
    older_layouts = _older_layouts(data.get("older_layouts"), errors)
    reader_checked = data.get("reader_checked", False)
    if not isinstance(reader_checked, bool):
        errors.append(f"'reader_checked' must be true or false, got {reader_checked!r}")
    access = data.get("access", "open")
    if access not in ACCESS_KINDS:
        errors.append(f"'access' must be one of {ACCESS_KINDS}, got {access!r}")
    signal = data.get("signal", "emg")
    if signal not in SIGNAL_KINDS:
        errors.append(f"'signal' must be one of {SIGNAL_KINDS}, got {signal!r}")
    scale = data.get("scale_to_volts")
    if scale is not None and not isinstance(scale, (int, float)):
        errors.append(f"'scale_to_volts' must be a number or null, got {scale!r}")
    channels = _channels(data.get("channels"), errors)
    parts = data.get("parts") or {}
    if not isinstance(parts, Mapping) or not all(isinstance(v, str) and v for v in parts.values()):
        errors.append(f"'parts' must map a part folder to a short non-empty name (pre, eval), got {parts!r}")
        parts = {}
    declared = _user_gestures(data.get("user_gestures"), errors)
    gestures = _gestures(data.get("gestures"), errors, declared)
    files = _grid_files(data.get("file_grid"), errors) | (
        _files(data["files"], errors) if "files" in data or "file_grid" not in data else {}
    )
    archive = None
    if data.get("archive") is not None:
        raw = data["archive"]
        if not isinstance(raw, Mapping) or "url" not in raw:
            errors.append("'archive' must be a mapping with 'url' (and 'sha256')")
        else:
            archive = Archive(str(raw["url"]), raw.get("sha256"), str(raw.get("member_prefix", "")))
    base_url = data.get("base_url")
    if access == "open" and base_url is None and archive is None:
        errors.append("an open dataset needs 'base_url' or 'archive' to download from")
    if fmt is not None and fmt not in FORMATS:
        errors.append(f"unknown format {fmt!r}; known formats: {', '.join(sorted(FORMATS))}")
    if files and pattern and not any(re.fullmatch(pattern, p) for p in files):
        errors.append("pattern matches none of the listed files")
    if errors:
        raise DatasetError(
            str(dataset_id),
            f"invalid dataset spec ({len(errors)} problem(s)): " + "; ".join(errors),
            file=source,
        )
    return DatasetSpec(
        id=ident,
        title=str(data.get("title", ident)),
        citation=str(data.get("citation", "")),
        doi=str(data.get("doi", "")),
        licence=str(data.get("licence", "unknown")),
        access=access,
        device=str(data.get("device", "")),
        format=fmt,
        sfreq=float(sfreq),
        units=str(data.get("units", "V")),
        scale_to_volts=None if scale is None else float(scale),
        signal=signal,
        channels=channels,
        gestures=gestures,
        pattern=pattern,
        n_subjects=int(data.get("n_subjects", 0)),
        files=files,
        base_url=base_url,
        archive=archive,
        reader_options=dict(data.get("reader_options") or {}),
        quirks=tuple(data.get("quirks") or ()),
        manual_instructions=str(data.get("manual_instructions", "")),
        urls=tuple(str(u) for u in data.get("urls") or ()),
        parts={str(k): v for k, v in parts.items()},
        reader_checked=reader_checked is True,
        older_layouts=older_layouts,
        user_gestures=declared,
        source=source,
    )


def load_spec(path: Path) -> DatasetSpec:
    """Parse one YAML spec file; YAML syntax errors are reported like content errors."""
    try:
        data = yaml.load(path.read_text(), Loader=_SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(path.stem, f"cannot parse YAML: {exc}".replace("\n", " "), file=str(path)) from None
    return spec_from_mapping(data, str(path))
