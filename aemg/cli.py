"""The ``aemg`` command: one sub-command per stage, each a thin call into a Prefect flow.

Failures print one line (dataset, file, reason, fix) and exit non-zero; ``AEMG_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from aemg.errors import AemgError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
datasets_app = typer.Typer(help="List registered datasets, or add one from a YAML spec.")
app.add_typer(datasets_app, name="datasets")
console = Console()

ParamsOpt = Annotated[str, typer.Option("--params", help="parameters file")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="harmonized store: a folder or s3://bucket/prefix (default data/harmonized.zarr)")]
TokensOpt = Annotated[str | None, typer.Option("--tokens", help="token store: a folder or s3://bucket/prefix (default data/tokens.zarr)")]
MirrorOpt = Annotated[str | None, typer.Option("--mirror", envvar="AEMG_MIRROR", help="mirror URL replacing every origin")]
DaskOpt = Annotated[
    str | None, typer.Option("--dask-address", envvar="AEMG_DASK_ADDRESS", help="scheduler address; 'sync' = no Dask")
]
IdsArg = Annotated[list[str] | None, typer.Argument(help="dataset ids (default: params.yaml)")]


def _run(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Run a flow; turn any failure into one line on stderr and exit code 1."""
    try:
        return fn(**kwargs)
    except (AemgError, ValueError, OSError) as exc:
        if os.environ.get("AEMG_DEBUG"):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"aemg: error: {reason}", file=sys.stderr)
        raise typer.Exit(1) from None


def _check_ids(ids: list[str] | None) -> None:
    """Refuse unknown dataset ids before any flow (and its Prefect server) starts."""
    from aemg.datasets.registry import get_spec

    for dataset_id in ids or []:
        _run(get_spec, dataset_id=dataset_id)


def _print_tables(tables: list[tuple[str, str]]) -> None:
    for caption, table in tables:
        console.print(caption, markup=False)
        console.print(table, markup=False)


def _print_summary(results: dict[str, Any]) -> None:
    for name, summary in results.items():
        console.print(f"[bold]{name}[/bold]: {json.dumps(summary, default=str)}")


def _print_rows(rows: list[dict[str, str]], fmt: str, title: str, long_cols: tuple[str, ...] = (),
                wrap_cols: tuple[str, ...] = ()) -> None:
    """Rows as csv, json or a terminal table; a narrow terminal drops ``long_cols`` (never the id) and
    wraps ``wrap_cols``."""
    if fmt == "json":
        print(json.dumps(rows, indent=2))
    elif fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        wide = console.width >= 160  # a narrow terminal gets the short columns; the long text is in csv/json
        cols = [c for c in rows[0] if wide or c not in long_cols]
        caption = None if wide or not long_cols else f"{', '.join(long_cols)}: --format csv or json"
        table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        short = {"channels": "ch", "sfreq": "Hz", "subjects": "subj", "gestures": "gest", "real files": "real"}
        for col in cols:
            table.add_column(col if wide else short.get(col, col), no_wrap=col not in (*long_cols, *wrap_cols),
                             overflow="fold")
        for row in rows:
            table.add_row(*(row[c] for c in cols))
        console.print(table)


def _output_format(fmt: str | None) -> str:
    fmt = fmt or ("table" if sys.stdout.isatty() else "csv")
    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter(f"--format must be table, csv or json, got {fmt!r}")
    return fmt


FormatOpt = Annotated[str | None, typer.Option("--format", help="table | csv | json (default: table on a terminal, csv when piped)")]


@datasets_app.callback(invoke_without_command=True)
def datasets(
    ctx: typer.Context,
    raw: Annotated[str, typer.Option(help="raw data folder")] = "data/raw",
    fmt: FormatOpt = None,
    gestures: Annotated[bool, typer.Option("--gestures", help="list the gesture vocabulary (shared and user)")] = False,
) -> None:
    """The registry: what each dataset is and whether it is cached here. Ids always print whole."""
    if ctx.invoked_subcommand:
        return
    from aemg.datasets.table import gesture_rows, registry_rows

    fmt = _output_format(fmt)
    if gestures:
        _print_rows(_run(gesture_rows), fmt, "aemg gestures", long_cols=("datasets",))
    else:
        _print_rows(_run(registry_rows, raw_dir=Path(raw)), fmt, "aemg datasets", long_cols=("title", "device", "licence"))


@datasets_app.command("add")
def datasets_add(spec: Path, emit: Annotated[bool, typer.Option(help="emit aemg.dataset.added")] = True) -> None:
    """Validate a YAML spec, copy it into datasets.d/ and announce it to Prefect."""
    from aemg.datasets.add import add_spec

    target = _run(add_spec, path=spec, emit=emit)
    console.print(f"added {target}")


@app.command()
def download(ids: IdsArg = None, params: ParamsOpt = "params.yaml", mirror: MirrorOpt = None) -> None:
    """Download datasets, verifying every file's sha256."""
    from aemg.flows.harmonize import download_flow

    _check_ids(ids)

    _print_summary(_run(download_flow, datasets=ids, params_path=params, mirror=mirror))


@app.command()
def history(
    store: Annotated[str | None, typer.Option("--store", help="store URL: a folder or s3://bucket/prefix (default: the harmonized store of --params)")] = None,
    params: ParamsOpt = "params.yaml",
    fmt: FormatOpt = None,
) -> None:
    """The snapshots of a store, newest first: when, which commit message, which datasets."""
    from aemg.params import load_params, stage_paths
    from aemg.store import history as store_history

    fmt = _output_format(fmt)
    target = store or stage_paths(load_params(params))["harmonized"]
    rows = _run(store_history, store=target)
    _print_rows(rows, fmt, f"aemg history {target}", long_cols=("tags",), wrap_cols=("message",))


@app.command()
def harmonize(
    ids: IdsArg = None,
    params: ParamsOpt = "params.yaml",
    store: StoreOpt = None,
    mirror: MirrorOpt = None,
    dask_address: DaskOpt = None,
    only_changed: Annotated[bool, typer.Option(help="skip datasets whose files and params are unchanged")] = False,
) -> None:
    """Download and harmonize datasets into the harmonized Zarr store."""
    from aemg.flows.harmonize import harmonize_flow

    _check_ids(ids)

    _print_summary(
        _run(harmonize_flow, datasets=ids, params_path=params, store=store, mirror=mirror,
             dask_address=dask_address, only_changed=only_changed)
    )


@app.command()
def tokenize(
    ids: IdsArg = None,
    params: ParamsOpt = "params.yaml",
    store: StoreOpt = None,
    tokens: TokensOpt = None,
    dask_address: DaskOpt = None,
    report: Annotated[bool, typer.Option("--report", help="score every detector (synthetic truth + real labels)")] = False,
    select_k: Annotated[
        bool, typer.Option("--select-k", help="muscle-state K-means: SSE and PNMI for each K (metrics/tokenize_select_k.json)")
    ] = False,
    consistency: Annotated[
        bool,
        typer.Option("--consistency", help="muscle-state tokens: kappa and overlap per held-out subject (metrics/tokenize_consistency.json)"),
    ] = False,
) -> None:
    """Cut harmonized recordings into contraction-event and muscle-state tokens (token store)."""
    if select_k or consistency:
        from aemg.flows.common import resolve
        from aemg.flows.dask_map import dask_map
        from aemg.tokenize.state_reports import write_consistency_report, write_select_k_report

        loaded, paths = resolve(params, {"harmonized": store})
        wanted = [("tokenize_select_k.json", write_select_k_report)] if select_k else []
        wanted += [("tokenize_consistency.json", write_consistency_report)] if consistency else []
        with dask_map(dask_address) as map_fn:
            for name, write in wanted:
                out = paths["metrics"] / name
                result = _run(write, store=paths["harmonized"], tp=loaded["tokenize"], out=out, datasets=ids, map_fn=map_fn)
                for entry in result["datasets"]:
                    brief = {k: v for k, v in entry.items() if k not in ("rows", "train_subjects", "heldout_subjects")}
                    console.print(result["report"], json.dumps(brief))
                console.print(f"written {out}")
        return
    if report:
        from aemg.flows.common import resolve
        from aemg.tokenize.report import write_report

        loaded, paths = resolve(params, {"harmonized": store})
        out = paths["metrics"] / "tokenize_report.json"
        result = _run(write_report, store=paths["harmonized"], tp=loaded["tokenize"], out=out, datasets=ids)
        for section, rows in result.items():
            for row in rows:
                console.print(section, json.dumps(row, default=lambda v: round(v, 3)))
        console.print(f"written {out}")
        return
    from aemg.flows.tokenize import tokenize_flow

    _check_ids(ids)

    _print_summary(_run(tokenize_flow, datasets=ids, params_path=params, store=store, tokens=tokens, dask_address=dask_address))


@app.command()
def pretrain(params: ParamsOpt = "params.yaml", tokens: TokensOpt = None, resume: bool = False) -> None:
    """Pre-train the VQ codebook and the masked-token Transformer (one model per held-out dataset and seed)."""
    from aemg.flows.pretrain import pretrain_flow

    _print_summary(_run(pretrain_flow, params_path=params, tokens=tokens, resume=resume))


@app.command()
def ablation(params: ParamsOpt = "params.yaml", tokens: TokensOpt = None) -> None:
    """Pre-train the fixed-window ablation models (when the evaluation grid lists aemg_probe_fixedwin)."""
    from aemg.flows.ablation import ablation_flow

    _print_summary(_run(ablation_flow, params_path=params, tokens=tokens))


@app.command()
def levers(params: ParamsOpt = "params.yaml", tokens: TokensOpt = None) -> None:
    """Score every lever of levers.run flipped against the defaults (metrics/levers_scores.csv)."""
    from aemg.flows.levers import levers_flow

    _print_summary(_run(levers_flow, params_path=params, tokens=tokens))


@app.command()
def evaluate(
    params: ParamsOpt = "params.yaml",
    tokens: TokensOpt = None,
    grid: Annotated[str | None, typer.Option(help="evaluation grid (default evaluate.grid): demo, full")] = None,
) -> None:
    """Leave-one-subject-out and few-shot evaluation of the pre-trained model against baselines."""
    from aemg.flows.evaluate import evaluate_flow

    result = _run(evaluate_flow, params_path=params, tokens=tokens, grid=grid)
    _print_tables(result["tables"])


@app.command()
def report(params: ParamsOpt = "params.yaml") -> None:
    """Figures and reports/README.md from the evaluation's metrics, stores and models."""
    from aemg.flows.report import report_flow

    for path in _run(report_flow, params_path=params):
        console.print(path)


@app.command()
def quality(
    reference: Annotated[str, typer.Argument(help="token file (.npy/.csv) or DATASET:RECORDING[:START_S-STOP_S]")],
    candidate: Annotated[str, typer.Argument(help="the execution to score, same forms")],
    params: ParamsOpt = "params.yaml",
    store: StoreOpt = None,
    k: Annotated[int, typer.Option(help="muscle-state tokens (K-means clusters)")] = 13,
    primary: Annotated[list[int] | None, typer.Option(help="channel index of a primary muscle (repeatable)")] = None,
    window: Annotated[int | None, typer.Option(help="Sakoe-Chiba band in frames (default none)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Movement quality: DTW between the muscle-state token sequences of two executions (0-100)."""
    from aemg.evaluate.quality import format_quality, quality_command

    result = _run(quality_command, reference=reference, candidate=candidate, params_path=params, store=store,
                  k=k, primary=primary, window=window)
    console.print(json.dumps(result, default=str) if as_json else format_quality(result))


@app.command("run")
def run_all(
    params: ParamsOpt = "params.yaml", mirror: MirrorOpt = None, dask_address: DaskOpt = None
) -> None:
    """All stages: harmonize, tokenize, pretrain, ablation, evaluate, report."""
    from aemg.flows.pipeline import pipeline_flow

    result = _run(pipeline_flow, params_path=params, mirror=mirror, dask_address=dask_address)
    _print_tables(result["tables"])


if __name__ == "__main__":
    app()
