"""``aemg tokenize --select-k`` and ``--consistency``: the muscle-state paper's K and agreement checks.

Both start from the harmonized store and run the same passes as ``aemg tokenize`` (same split,
thresholds and seeded samples, so the consistency report scores exactly the codebook stored in
the token store):

- **select-k** (paper Sec. 3.3): on a sample of the *training* subjects' feature rows, K-means
  for every K in ``tokenize.states.select_k`` (2..25) with the SSE in the scaled feature space
  and the PNMI, I(state; gesture) / H(gesture), against the gesture label of each frame
  (unlabelled frames left out). SSE flattening and PNMI peaking pick K.
- **consistency** (paper Sec. 4.2): for each *held-out* subject, the tokens given by the
  training-subject codebook against the tokens of a K-means fitted on that subject alone
  (same scaling rule, same rest -> strongest ordering): Cohen's kappa, exact overlap and
  overlap within +-1 token.

Each fit sees at most ``tokenize.states.report_max_rows`` rows (a seeded Bernoulli sample).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from aemg.store import StoreLike, list_groups, open_group, recording_table_from
from aemg.tokenize.dataset import MapFn, state_plan
from aemg.tokenize.state_tokens import gather_sample, sample_probabilities, state_params
from aemg.tokenize.states import consistency, select_k


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()) if arr.size else float("nan"),
            "sd": float(arr.std()) if arr.size else float("nan")}


def select_k_rows(store: StoreLike, dataset: str, tp: dict[str, Any], map_fn: MapFn = map) -> dict[str, Any]:
    """SSE and PNMI per K for one dataset, on its training subjects."""
    ds = open_group(store, dataset)
    table = recording_table_from(ds)
    plan = state_plan(store, dataset, tp, map_fn)
    raw = plan.sp.raw
    lo, hi = (int(v) for v in raw["select_k"])
    train_recs = [int(r) for r in np.flatnonzero(table.subject.isin(plan.train).to_numpy())]
    probs = sample_probabilities(table, train_recs, plan.sp, ds.sizes["channel"], int(raw["report_max_rows"]))
    sample = gather_sample(map_fn, store, dataset, tp, train_recs, probs, plan.thr, int(tp["recordings_per_task"]))
    rows = np.concatenate([r for _, r, _ in sample])
    labels = np.concatenate([g for _, _, g in sample])
    labelled = labels >= 0
    rows, labels = rows[labelled], labels[labelled]
    out: dict[str, Any] = {"dataset": dataset, "train_subjects": plan.train, "n_rows": len(rows),
                           "n_gestures": int(np.unique(labels).size)}
    if np.unique(labels).size < 2 or len(rows) < hi:
        out["skipped"] = f"needs >= 2 gestures and >= {hi} labelled rows, got {out['n_gestures']} and {len(rows)}"
        out["rows"] = []
        return out
    with threadpool_limits(1):  # see fit_codebook
        out["rows"] = select_k(rows, labels, ks=range(lo, hi + 1), seed=plan.sp.seed)
    pnmi = [r["pnmi"] for r in out["rows"]]
    out["pnmi_best_k"] = int(out["rows"][int(np.argmax(pnmi))]["k"])
    return out


def consistency_rows(store: StoreLike, dataset: str, tp: dict[str, Any], map_fn: MapFn = map) -> dict[str, Any]:
    """Kappa and overlap (exact, +-1) per held-out subject of one dataset, with mean and sd."""
    ds = open_group(store, dataset)
    table = recording_table_from(ds)
    plan = state_plan(store, dataset, tp, map_fn)
    assert plan.codebook is not None
    raw = plan.sp.raw
    out: dict[str, Any] = {"dataset": dataset, "k": plan.sp.k, "train_subjects": plan.train,
                           "heldout_subjects": plan.heldout, "rows": []}
    if not plan.heldout:
        out["skipped"] = "no held-out subject (one subject, or train_subjects_fraction = 1)"
        return out
    probs: dict[int, float] = {}
    for subject in plan.heldout:
        recs = np.flatnonzero((table.subject == subject).to_numpy())
        probs.update(sample_probabilities(table, recs, plan.sp, ds.sizes["channel"], int(raw["report_max_rows"])))
    recs = sorted(probs)
    sample = gather_sample(map_fn, store, dataset, tp, recs, probs, plan.thr, int(tp["recordings_per_task"]))
    for subject in plan.heldout:
        rows = [r for rec, r, _ in sample if table.subject.iloc[rec] == subject]
        feats = np.concatenate(rows) if rows else np.zeros((0, 10), np.float32)
        if len(feats) < plan.sp.k:
            out["rows"].append({"subject": subject, "skipped": f"{len(feats)} feature rows < k={plan.sp.k}"})
            continue
        with threadpool_limits(1):  # see fit_codebook
            out["rows"].append({"subject": subject, **consistency(plan.codebook, feats, seed=plan.sp.seed)})
    scored = [r for r in out["rows"] if "kappa" in r]
    out["summary"] = {key: _mean_sd([r[key] for r in scored]) for key in ("kappa", "overlap", "overlap_pm1")}
    return out


def _write(kind: str, fn: Any, store: StoreLike, tp: dict[str, Any], out: Path, datasets: list[str] | None,
           map_fn: MapFn) -> dict[str, Any]:
    report = {
        "report": kind,
        "states_params": state_params(tp),
        "datasets": [fn(store, dataset, tp, map_fn) for dataset in datasets or list_groups(store)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    return report


def write_select_k_report(store: StoreLike, tp: dict[str, Any], out: Path, datasets: list[str] | None = None,
                          map_fn: MapFn = map) -> dict[str, Any]:
    """``metrics/tokenize_select_k.json``: SSE and PNMI for each K, per dataset."""
    return _write("select_k", select_k_rows, store, tp, out, datasets, map_fn)


def write_consistency_report(store: StoreLike, tp: dict[str, Any], out: Path, datasets: list[str] | None = None,
                             map_fn: MapFn = map) -> dict[str, Any]:
    """``metrics/tokenize_consistency.json``: agreement per held-out subject, per dataset."""
    return _write("consistency", consistency_rows, store, tp, out, datasets, map_fn)
