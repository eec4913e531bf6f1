"""``aemg report``: figures and a README for ``reports/`` from the metrics and the stores.

Figures (matplotlib, Agg backend), written only where their inputs exist:

- ``per_subject_accuracy.png``  LOSO accuracy of every method for every held-out subject.
- ``confusion_<dataset>.png``   row-normalised confusion matrices of the best baseline and the
  best AEMG method (from ``metrics/loso_predictions.csv.gz``).
- ``few_shot.png``              accuracy against the share of the target subject's trials used
  for adaptation (log axis; dashed: the LOSO model on the same test trials).
- ``event_raster_<dataset>.png``  one recording: EMG per channel and, under it, its contraction
  events, each (event, channel) patch coloured by its VQ code from the pre-trained tokenizer.
- ``codebook_prototypes_<dataset>.png``  the most used codes: the mean (± std) patch assigned
  to each, and the decoder's reconstruction of the code vector itself.
- ``muscle_states_<dataset>.png``  muscle-state tokens (rest 0 .. strongest K-1) per channel
  over the same recording, with the gesture labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aemg.evaluate.methods import is_aemg, is_baseline
from aemg.params import load_params, stage_paths
from aemg.store import has_group, open_group
from aemg.vocabulary import CODE_TO_NAME


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _colors(methods: list[str]) -> dict[str, Any]:
    cmap = _plt().get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


# --------------------------------------------------------------------------- metric figures
def _strict(rows: pd.DataFrame) -> pd.DataFrame:
    """Strict zero-shot rows (fraction 0); files written before protocols existed are all that."""
    rows = rows[rows.fraction == 0]
    return rows[rows.protocol == "zero_shot"] if "protocol" in rows else rows


def plot_per_subject(scores: pd.DataFrame, out: Path) -> Path | None:
    """Strict zero-shot accuracy per held-out subject, averaged over seeds."""
    loso = _strict(scores)
    if loso.empty:
        return None
    loso = loso.groupby(["dataset", "method", "subject"], as_index=False).accuracy.mean()
    plt = _plt()
    datasets = sorted(loso.dataset.unique())
    methods = sorted(loso.method.unique(), key=lambda m: (is_aemg(m), m))
    colors = _colors(methods)
    fig, axes = plt.subplots(len(datasets), 1, figsize=(max(7, 0.45 * loso.subject.nunique() + 4), 2.8 * len(datasets)), squeeze=False)
    for ax, ds in zip(axes[:, 0], datasets, strict=True):
        d = loso[loso.dataset == ds]
        subjects = sorted(d.subject.unique(), key=str)
        x = np.arange(len(subjects))
        width = 0.8 / max(len(methods), 1)
        for i, m in enumerate(methods):
            acc = d[d.method == m].set_index("subject").accuracy.reindex(subjects)
            ax.bar(x - 0.4 + (i + 0.5) * width, acc.to_numpy(), width, color=colors[m],
                   label=f"{m} ({acc.mean():.2f})", hatch="//" if is_aemg(m) else None, edgecolor="white", linewidth=0)
        ax.set_xticks(x, subjects, rotation=60 if len(subjects) > 8 else 0, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{ds}: strict zero-shot accuracy per held-out subject (mean over seeds)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method (mean)", title_fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "per_subject_accuracy.png")


def plot_confusions(summary: dict[str, Any], predictions: pd.DataFrame, out: Path) -> list[Path]:
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    paths = []
    for ds, per in sorted(summary.items()):
        ranked = {m: v["accuracy_mean"] for m, v in per.items() if "accuracy_mean" in v}
        picks = [max((m for m in ranked if is_baseline(m)), key=ranked.get, default=None),
                 max((m for m in ranked if is_aemg(m)), key=ranked.get, default=None)]
        picks = [m for m in picks if m is not None]
        p = _strict(predictions[predictions.dataset == ds])  # every seed's predictions pooled
        if p.empty or not picks:
            continue
        labels = sorted(p.y_true.unique())
        names = [CODE_TO_NAME.get(int(c), str(c)) for c in labels]
        fig, axes = plt.subplots(1, len(picks), figsize=(4.6 * len(picks), 4.2), squeeze=False)
        for ax, m in zip(axes[0], picks, strict=True):
            pm = p[p.method == m]
            cm = confusion_matrix(pm.y_true, pm.y_pred, labels=labels, normalize="true")
            ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
            for i in range(len(labels)):
                for j in range(len(labels)):
                    if cm[i, j] >= 0.05:
                        ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if cm[i, j] > 0.5 else "black")
            ax.set_xticks(range(len(labels)), names, rotation=70, fontsize=7)
            ax.set_yticks(range(len(labels)), names, fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{m}: {ranked[m]:.3f}", fontsize=9)
        fig.suptitle(f"{ds}: confusion (rows normalised), all held-out subjects pooled", fontsize=10)
        fig.tight_layout()
        paths.append(_save(fig, out / f"confusion_{ds}.png"))
    return paths


def plot_few_shot(summary: dict[str, Any], out: Path) -> Path | None:
    entries = [(ds, m, v["few_shot"]) for ds, per in sorted(summary.items()) for m, v in sorted(per.items()) if v.get("few_shot")]
    if not entries:
        return None
    plt = _plt()
    datasets = sorted({e[0] for e in entries})
    colors = _colors(sorted({e[1] for e in entries}, key=lambda m: (is_aemg(m), m)))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        shown: set[float] = set()
        for _, m, fs in (e for e in entries if e[0] == ds):
            fr = sorted(float(k) for k in fs if float(k) > 0)
            shown.update(fr)
            acc = [fs[f"{f:g}"]["accuracy_mean"] for f in fr]
            sd = [fs[f"{f:g}"]["accuracy_std"] for f in fr]
            ax.errorbar(fr, acc, yerr=sd, marker="o", ms=3, capsize=2, color=colors[m], label=m,
                        linestyle="-" if is_aemg(m) else "--", linewidth=1.2)
            if "0" in fs:
                ax.axhline(fs["0"]["accuracy_mean"], color=colors[m], linestyle=":", linewidth=0.9)
        ax.set_xscale("log")
        ticks = sorted(shown)  # label the fractions themselves, not log-scale minor ticks
        ax.set_xticks(ticks, [f"{100 * f:g} %" for f in ticks])
        ax.minorticks_off()
        ax.set_xlabel("share of the target subject's trials used (log)")
        ax.set_ylabel("accuracy on its later trials")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(ds, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("few-shot adaptation (dotted: LOSO model, no target data)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out / "few_shot.png")


# --------------------------------------------------------------------------- store figures
def _pick_recording(events: Any) -> int:
    """The recording with the most labelled events (ties: the first)."""
    rec = events["recording"].values
    labelled = events["gesture"].values >= 0
    counts = np.bincount(rec[labelled], minlength=int(rec.max()) + 1) if len(rec) else np.zeros(1)
    return int(counts.argmax())


def plot_event_raster(harmonized: Path, tokens: Path, model_dir: Path, dataset: str, out: Path,
                      max_seconds: float = 60.0) -> Path | None:

    from aemg.model.store_io import load_tokenset

    if not has_group(tokens, f"{dataset}/events") or not has_group(harmonized, dataset):
        return None
    events = open_group(tokens, f"{dataset}/events")
    h = open_group(harmonized, dataset)
    rec = _pick_recording(events)
    sel = np.flatnonzero(events["recording"].values == rec)
    if len(sel) == 0:
        return None
    sfreq = float(h.attrs["sfreq"])
    offset, n_times = int(h["offset"].values[rec]), int(h["n_times"].values[rec])
    span = int(max_seconds * sfreq)
    if n_times > span:  # zoom on the first window of max_seconds that starts at an event
        first = int(events["start"].values[sel].min())
        offset, n_times = offset + first, min(span, n_times - first)
        keep = (events["start"].values[sel] >= first) & (events["stop"].values[sel] <= first + n_times)
        sel = sel[keep]
        t0 = first
    else:
        t0 = 0
    emg = h["emg"][offset:offset + n_times].values
    gesture = h["gesture"][offset:offset + n_times].values
    n_chans = emg.shape[1]
    codes, k = _codes(model_dir, load_tokenset(tokens, dataset, sel))
    plt = _plt()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 1.2 + 0.35 * n_chans * 2), sharex=True,
                                 gridspec_kw={"height_ratios": [1.3, 1]})
    t = (t0 + np.arange(n_times)) / sfreq
    scale = 3 * np.nanstd(emg) or 1.0
    step = max(1, n_chans // 16)
    for c in range(0, n_chans, step):
        a1.plot(t, emg[:, c] / scale + c, lw=0.4, color="k")
    a1.set_ylabel("channel")
    a1.set_title(f"{dataset}: recording {rec}, subject {h['subject'].values[rec]} — EMG and contraction-event tokens", fontsize=10)
    lab = np.where(gesture >= 0, gesture, np.nan)
    a1b = a1.twinx()
    a1b.plot(t, lab, color="tab:red", lw=0.8, alpha=0.6)
    a1b.set_ylabel("gesture code", color="tab:red", fontsize=8)
    cmap = plt.get_cmap("tab20" if k <= 20 else "nipy_spectral", k)
    start, stop = events["start"].values[sel], events["stop"].values[sel]
    spans = list(zip(start / sfreq, (stop - start) / sfreq, strict=True))
    for c in range(n_chans):
        colors = [cmap(int(code) % cmap.N) for code in codes[:, c]] if codes is not None else "tab:blue"
        a2.broken_barh(spans, (c - 0.45, 0.9), facecolors=colors, linewidth=0)
    a2.set_ylim(-0.6, n_chans - 0.4)
    a2.set_xlim(t0 / sfreq, (t0 + n_times) / sfreq)
    a2.set_ylabel("channel")
    a2.set_xlabel("time (s)")
    a2.set_title("events × channels, coloured by VQ code" if codes is not None else "events × channels (no model: one colour)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out / f"event_raster_{dataset}.png")


def _codes(model_dir: Path, ts: Any) -> tuple[np.ndarray | None, int]:
    if not (model_dir / "vq.pt").exists():
        return None, 1
    from aemg.model import compute_codes, load_model

    vq, _, cfg = load_model(model_dir, "cpu")
    return compute_codes(vq, [ts], "cpu")[0], cfg.codebook_size


def plot_codebook_prototypes(tokens: Path, model_dir: Path, dataset: str, out: Path, n_codes: int = 16) -> Path | None:
    """Most used codes on this dataset's patches: mean ± std of the patches each code takes, and
    the decoder's output for the code vector (conditioning: mean electrode position, channel 0,
    onset 0, order 0)."""
    import torch

    from aemg.model import compute_codes, load_model
    from aemg.model.store_io import load_tokenset

    if not (model_dir / "vq.pt").exists() or not has_group(tokens, f"{dataset}/events"):
        return None
    ts = load_tokenset(tokens, dataset)
    if ts.n_events == 0:
        return None
    vq, _, cfg = load_model(model_dir, "cpu")
    codes = compute_codes(vq, [ts], "cpu")[0].ravel()
    patches = ts.tokens.reshape(-1, ts.n_times)
    used = np.bincount(codes, minlength=cfg.codebook_size)
    top = np.argsort(-used)[:n_codes]
    top = top[used[top] > 0]
    with torch.no_grad():
        q = vq.vq.codebook[torch.as_tensor(top)]
        n = len(top)
        pos = torch.as_tensor(ts.positions.mean(axis=0), dtype=torch.float32).expand(n, 3)
        decoded, _ = vq.decode(q, pos, torch.zeros(n, dtype=torch.long), torch.zeros(n), torch.zeros(n, dtype=torch.long))
        decoded = decoded.float().numpy()
    plt = _plt()
    cols = 4
    rows = int(np.ceil(len(top) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 1.9 * rows), squeeze=False, sharex=True)
    t = np.arange(ts.n_times)
    for ax, (i, code) in zip(axes.ravel(), enumerate(top), strict=False):
        member = patches[codes == code]
        mu, sd = member.mean(axis=0), member.std(axis=0)
        ax.fill_between(t, mu - sd, mu + sd, color="tab:blue", alpha=0.2, lw=0)
        ax.plot(t, mu, color="tab:blue", lw=1, label="mean patch")
        ax.plot(t, decoded[i], color="tab:orange", lw=1, ls="--", label="decoded code")
        ax.set_title(f"code {code}: {used[code] / used.sum():.1%} of patches", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(top):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"{dataset}: most used contraction prototypes (model pre-trained without {dataset})", fontsize=10)
    fig.tight_layout()
    return _save(fig, out / f"codebook_prototypes_{dataset}.png")


def plot_muscle_states(harmonized: Path, tokens: Path, dataset: str, out: Path, k: int = 13) -> Path | None:

    from aemg.evaluate.quality import fit_dataset_codebook, load_dataset_signal, span_states

    if not has_group(harmonized, dataset):
        return None
    info = load_dataset_signal(harmonized, dataset)
    rec = 0
    if has_group(tokens, f"{dataset}/events"):
        rec = _pick_recording(open_group(tokens, f"{dataset}/events"))
    codebook = fit_dataset_codebook(info, k=k, max_samples=50_000)
    states = span_states(codebook, info, rec)
    o, n = int(info["offset"][rec]), int(info["n_times"][rec])
    gesture = info["gesture"][o:o + n]
    frames_t = (np.arange(len(states)) * info["stride"] + info["window"] / 2) / info["sfreq"]
    plt = _plt()
    n_chans = states.shape[1]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 1.5 + 0.22 * n_chans), sharex=True,
                                 gridspec_kw={"height_ratios": [max(3, n_chans / 3), 0.6]})
    im = a1.imshow(states.T, aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=k - 1,
                   extent=(frames_t[0], frames_t[-1], n_chans - 0.5, -0.5))
    labels = info["channels"]
    step = max(1, n_chans // 16)
    a1.set_yticks(range(0, n_chans, step), labels[::step], fontsize=7)
    a1.set_title(f"{dataset}: muscle-state tokens per channel (K={k}, 0 = rest), recording {rec}", fontsize=10)
    t = np.arange(n) / info["sfreq"]
    a2.plot(t, np.where(gesture >= 0, gesture, np.nan), color="tab:red", lw=1)
    codes = sorted(int(c) for c in np.unique(gesture) if c >= 0)
    a2.set_yticks(codes, [CODE_TO_NAME.get(c, str(c)) for c in codes], fontsize=7)
    a2.set_ylim(min(codes, default=0) - 0.5, max(codes, default=0) + 0.5)
    a2.set_xlabel("time (s)")
    fig.tight_layout()
    fig.colorbar(im, ax=[a1, a2], pad=0.01, label="state")
    return _save(fig, out / f"muscle_states_{dataset}.png")


# --------------------------------------------------------------------------- README
def write_ablation(scores: pd.DataFrame, metrics: Path, params: dict[str, Any], out: Path) -> Path | None:
    """``reports/ablation.md``: every lever against the defaults (see :mod:`aemg.evaluate.levers`)."""
    from aemg.evaluate.levers import ablation_table, format_ablation

    lever_file = metrics / "levers_scores.csv"
    levers = pd.read_csv(lever_file, dtype={"subject": str}) if lever_file.exists() else pd.DataFrame()
    table = format_ablation(ablation_table(scores, levers, params))
    if not table:
        return None
    path = out / "ablation.md"
    path.write_text("# Levers: each flipped against the defaults\n\n" + ABLATION_CAPTION + "\n\n" + table + "\n")
    return path


ABLATION_CAPTION = (
    "Strict zero-shot LOSO accuracy (mean ± sd over pre-training seeds) with each lever at its default "
    "and flipped; differences are paired over subjects (seed-averaged), p from a Wilcoxon signed-rank test. "
    "'inner CV picks' compares the probe's inner-CV accuracy on the training subjects only (the criterion "
    "allowed to choose a default). The unlabelled-target row compares protocols, not settings.")


def _markdown(summary: dict[str, Any], figures: list[Path], out: Path, ablation: Path | None = None) -> Path:
    from aemg.evaluate.loso import format_tables

    lines = ["# Evaluation report", ""]
    for caption, table in format_tables(summary):
        lines += [caption, "", "```", table, "```", ""]
    tests = [(ds, m, v["wilcoxon_vs_best_baseline"]) for ds, per in sorted(summary.items())
             for m, v in sorted(per.items()) if v.get("best_aemg") and "wilcoxon_vs_best_baseline" in v]
    if tests:
        lines += ["Best AEMG method against the best baseline (paired Wilcoxon over subjects):", "",
                  "| dataset | AEMG | baseline | mean difference | p | subjects |", "|---|---|---|---|---|---|"]
        for ds, m, w in tests:
            lines.append(f"| {ds} | {m} | {w['baseline']} | {w['mean_difference']:+.3f} | {w['p_value']:.3g} | {w['n_subjects']} |")
        lines.append("")
    if ablation is not None:
        lines += ["## Levers", "", ablation.read_text().split("\n", 2)[2], ""]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def build_report(params_path: str | Path | None = None, datasets: list[str] | None = None) -> list[Path]:
    """Every figure whose inputs exist, plus ``reports/README.md``; returns the paths written.

    Reads ``metrics/loso.json``, ``metrics/loso_scores.csv``, ``metrics/loso_predictions.csv.gz``,
    the harmonized and token stores and the first seed's model ``models/<dataset>/seed<k>/``.
    """
    from aemg.errors import AemgError
    from aemg.model.stage import model_dir, seeds_of

    params = load_params(params_path)
    paths = stage_paths(params)
    metrics, out = paths["metrics"], paths["reports"]
    if not (metrics / "loso.json").exists():
        raise AemgError(f"no {metrics / 'loso.json'}: run `aemg evaluate` first")
    summary = json.loads((metrics / "loso.json").read_text())
    scores = pd.read_csv(metrics / "loso_scores.csv", dtype={"subject": str})
    out.mkdir(parents=True, exist_ok=True)
    figures: list[Path | None] = [plot_per_subject(scores, out)]
    pred_file = metrics / "loso_predictions.csv.gz"
    if pred_file.exists():
        figures += plot_confusions(summary, pd.read_csv(pred_file, dtype={"subject": str}), out)
    figures.append(plot_few_shot(summary, out))
    k = int(params["evaluate"].get("state_k", 13))
    seed = seeds_of(params["pretrain"])[0]  # the figures show one model; every seed's looks alike
    for ds in datasets or sorted(summary):
        figures.append(plot_event_raster(paths["harmonized"], paths["tokens"], model_dir(paths["models"], ds, seed), ds, out))
        figures.append(plot_codebook_prototypes(paths["tokens"], model_dir(paths["models"], ds, seed), ds, out))
        figures.append(plot_muscle_states(paths["harmonized"], paths["tokens"], ds, out, k=k))
    written = [p for p in figures if p is not None]
    ablation = write_ablation(scores, metrics, params, out)
    return [*written, *([ablation] if ablation else []), _markdown(summary, written, out, ablation)]
