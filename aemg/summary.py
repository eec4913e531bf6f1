"""What ``make demo`` prints last: where everything is, the LOSO table and the few-shot table."""

from __future__ import annotations

import json
import sys

from aemg.evaluate.loso import format_tables
from aemg.params import load_params, stage_paths


def main(params_path: str = "params.yaml") -> int:
    paths = stage_paths(load_params(params_path))
    loso = paths["metrics"] / "loso.json"
    if not loso.exists():
        print(f"no {loso}: run `dvc repro` (or `aemg run`) first", file=sys.stderr)
        return 1
    print(f"harmonized store : {paths['harmonized']}  (aemg.store.open_tree(url); `aemg history --store URL`)")
    print(f"token store      : {paths['tokens']}")
    print(f"models           : {paths['models']}/<evaluated dataset>/ (vq.pt, mtm.pt, manifest.json)")
    print(f"metrics          : {loso}, {paths['metrics'] / 'loso_scores.csv'}, {paths['metrics'] / 'pretrain.json'}")
    print(f"report           : {paths['reports'] / 'README.md'}")
    summary = json.loads(loso.read_text())
    for caption, table in format_tables(summary):
        print(f"\n{caption}")
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
