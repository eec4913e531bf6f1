"""Ablation: pre-training on fixed-window tokens in place of contraction events (AEMG's own ablation).

The event tokenizer keeps only the windows where a contraction crosses the energy threshold; the
ablation cuts *every* recording into consecutive ``token_len`` windows (no detection), grouped
into sentences of ``max_order`` windows exactly as events are, de-meaned (raw EMG only) and
scaled by each subject's own channel RMS as the event tokens are when pre-training reads them
(:func:`aemg.model.store_io.load_tokenset`), from the same sources (``pretrain.match_signal``). A model is then pre-trained on those tokens of the other datasets (leave one
dataset out, as the event model), with the same preset and, per dataset, no more patches than
the event model saw (so the ablation changes *what* is seen, not how much). Evaluation then uses
the same trials (labelled events) and the same linear probe; only the pre-trained model differs
(method ``aemg_probe_fixedwin``, model in ``<paths.models_fixedwin>/<dataset>/seed<k>``, one per
pre-training seed: ``aemg.model.stage.model_dir``).

``aemg ablation`` (DVC stage ``ablation``, flow ``ablation``) runs :func:`pretrain_fixed_window`
for every evaluated dataset when the evaluation grid's methods list ``aemg_probe_fixedwin``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aemg.errors import AemgError
from aemg.store import has_group, open_group


def fixed_window_tokenset(harmonized: Path, dataset: str, tp: dict[str, Any]) -> Any:
    """Every recording of ``dataset`` cut into consecutive windows, as a TokenSet whose subjects
    are each scaled by their own channel RMS (they are all pre-training subjects)."""
    from aemg.model.data import TokenSet
    from aemg.model.store_io import electrode_positions
    from aemg.scaling import scale_by_own_subject
    from aemg.tokenize.dataset import signal_of
    from aemg.tokenize.events import EventParams, demeans, tokens_from_events

    if not has_group(harmonized, dataset):
        raise AemgError(f"{dataset}: not in {harmonized}; run `aemg harmonize {dataset}` first")
    ds = open_group(harmonized, dataset)
    sfreq = float(ds.attrs["sfreq"])
    p = EventParams.from_params(tp, sfreq)
    emg = np.asarray(ds["emg"].values)
    gesture = ds["gesture"].values
    offset, n_times = ds["offset"].values.astype(np.int64), ds["n_times"].values.astype(np.int64)
    subject = ds["subject"].values.astype(object).astype(str)
    demean = demeans(signal_of(ds))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("token", "sentence", "order", "onset", "subject")}
    base = 0
    for rec, (o, n) in enumerate(zip(offset, n_times, strict=True)):
        if n < p.token_len:
            continue
        x, g = emg[o:o + n], gesture[o:o + n]
        tok = tokens_from_events(x, g, [(0, int(n))], p, demean)
        if len(tok["start"]) == 0:
            continue
        cols["token"].append(tok["token"])
        cols["sentence"].append(tok["sentence"] + base)
        cols["order"].append(tok["order"])
        cols["onset"].append(((tok["start"] - tok["sentence_start"]) / sfreq).astype(np.float32))
        cols["subject"].append(np.full(len(tok["start"]), subject[rec], dtype=object))
        base += int(tok["sentence"].max()) + 1
    if not cols["token"]:
        raise AemgError(f"{dataset}: no recording is longer than one token ({p.token_len} samples)")
    subjects = np.concatenate(cols["subject"]).astype(str)
    return TokenSet(
        tokens=scale_by_own_subject(np.concatenate(cols["token"]), subjects), positions=electrode_positions(ds),
        sentence=np.concatenate(cols["sentence"]), order=np.concatenate(cols["order"]),
        onset=np.concatenate(cols["onset"]), subject=subjects, dataset=dataset,
    )


def pretrain_fixed_window(
    harmonized: Path, tokens_store: Path, out_dir: Path, evaluated: str, sources: list[str],
    tp: dict[str, Any], pp: dict[str, Any], seed: int, device: str | None = None,
) -> dict[str, Any]:
    """The event model's recipe (``aemg.model.stage.pretrain_without``, same ``seed`` and source
    datasets) on fixed-window tokens, each dataset capped at the number of event patches its event
    model trains on."""
    from aemg.model.stage import pretraining_sources, train_model
    from aemg.model.store_io import limit_patches, pretraining_rows, split_by_subject

    cap = int(pp.get("max_patches_per_dataset", 0))
    chosen, provenance = pretraining_sources(tokens_store, evaluated, sources, pp)
    train_sets, heldout_sets, seen = [], [], {}
    for dataset in chosen:
        ev_train, ev_held, n_chans = pretraining_rows(tokens_store, dataset, float(pp["heldout_fraction"]), cap,
                                                      int(seed))
        if len(ev_train) + len(ev_held) == 0:
            continue
        n_train, n_held = len(ev_train) * n_chans, len(ev_held) * n_chans
        fixed = fixed_window_tokenset(harmonized, dataset, tp)
        train, held = split_by_subject(fixed, float(pp["heldout_fraction"]), int(seed))
        train = limit_patches(train, max(n_train, train.n_chans), int(seed))
        held = limit_patches(held, max(n_held, held.n_chans), int(seed))
        train_sets.append(train)
        if held.n_events:
            heldout_sets.append(held)
        seen[dataset] = sorted(set(fixed.subject.tolist()))
    if not train_sets or not heldout_sets:
        raise AemgError(f"{evaluated}: no other dataset to pre-train the fixed-window ablation on")
    metrics = train_model(train_sets, heldout_sets, pp, seed, out_dir, device=device, progress=False)
    manifest = {"evaluated_dataset": evaluated, "preset": pp["preset"], "seed": int(seed), "subjects_seen": seen,
                "tokens": "fixed_window"} | provenance
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return {k: metrics[k] for k in ("codebook_usage", "reconstruction_error", "masked_token_accuracy")}
