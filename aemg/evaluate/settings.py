"""Evaluation settings: the ``evaluate`` section of the parameters with its grid applied.

A *grid* is a named set of overrides (``evaluate.grids``) chosen by ``evaluate.grid``, so that
``make demo`` and the paper-sized evaluation share one params file and DVC still sees every
value that changes a result.
"""

from __future__ import annotations

from typing import Any

from aemg.errors import AemgError
from aemg.params import DEFAULTS


def ep_get(ep: dict[str, Any], key: str) -> Any:
    """``ep[key]``, or the default when a caller passes a partial section (tests, notebooks)."""
    return ep.get(key, DEFAULTS["evaluate"][key])


def resolve_grid(ep: dict[str, Any], grid: str | None = None) -> dict[str, Any]:
    """The section with grid ``grid`` (default ``ep['grid']``) applied; ``grids`` dropped."""
    name = ep.get("grid") if grid is None else grid
    grids = ep.get("grids", DEFAULTS["evaluate"]["grids"])
    out = {k: v for k, v in ep.items() if k not in ("grid", "grids")}
    if name is None:
        return out
    if name not in grids:
        raise AemgError(f"evaluate.grid: unknown grid {name!r}; valid: {', '.join(grids)} (or null)")
    unknown = sorted(set(grids[name]) - set(DEFAULTS["evaluate"]))
    if unknown:
        raise AemgError(f"evaluate.grids.{name}: unknown key(s) {', '.join(unknown)}; a grid overrides evaluate keys")
    return out | dict(grids[name]) | {"grid": name}
