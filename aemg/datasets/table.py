"""The registry as rows, for ``aemg datasets`` and the README's dataset table."""

from __future__ import annotations

from pathlib import Path

from aemg.datasets.registry import all_specs, gesture_codes
from aemg.vocabulary import GESTURES


def registry_rows(raw_dir: Path = Path("data/raw")) -> list[dict[str, str]]:
    rows = []
    for spec in all_specs().values():
        data = spec.data_files()
        cached = sum((raw_dir / spec.id / f).exists() for f in data)
        gestures = sorted({name for name in spec.gestures.values() if name != "unlabelled"})
        rows.append(
            {
                "id": spec.id,
                "title": spec.title,
                "device": spec.device,
                "channels": str(spec.n_chans),
                "sfreq": f"{spec.sfreq:g}",
                "subjects": str(spec.n_subjects),
                "gestures": str(len(gestures)),
                "licence": spec.licence,
                "access": spec.access,
                "real files": "yes" if spec.reader_checked else "no",
                "cached": f"{cached}/{len(data)}",
            }
        )
    return rows


def gesture_rows() -> list[dict[str, str]]:
    """The vocabulary (shared names, then the user's own) with the datasets that map onto each name."""
    specs = all_specs()  # registers the names user specs declare
    return [
        {
            "name": name,
            "code": str(code),
            "vocabulary": "shared" if name in GESTURES else "user",
            "datasets": " ".join(s.id for s in specs.values() if name in s.gestures.values()),
        }
        for name, code in gesture_codes().items()
    ]


def markdown_table(raw_dir: Path = Path("data/raw")) -> str:
    """The README's table: generated from the registry so the two never drift."""
    rows = [{k: v for k, v in r.items() if k != "cached"} for r in registry_rows(raw_dir)]
    header = "| " + " | ".join(rows[0]) + " |"
    rule = "|" + "---|" * len(rows[0])
    return "\n".join([header, rule, *("| " + " | ".join(r.values()) + " |" for r in rows)])


README_MARKERS = ("<!-- datasets:start -->", "<!-- datasets:end -->")


def render_readme(text: str) -> str:
    """``text`` with the block between the README markers replaced by the registry table."""
    start, end = README_MARKERS
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{markdown_table()}\n{end}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        readme = Path(sys.argv[2])
        readme.write_text(render_readme(readme.read_text()))
    else:
        print(markdown_table())
