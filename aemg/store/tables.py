"""Tables and text as stored: how a group's text and its recordings table are written and read back."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from aemg.schemas import RecordingTable

STRING_COLUMNS = ("subject", "session", "source_file", "source_sha256")
RECORDING_COLUMNS = ("offset", "n_times", "subject", "session", "repetition", "source_file", "source_sha256")


def text_array(values: Iterable[object]) -> np.ndarray:
    """Strings as fixed-width unicode (``<U<n>``), the dtype every store's text variables are written in.

    Zarr v3 writes Python/object strings as variable-length strings, which read back as numpy's
    ``StringDType``: ``ds.where(ds.subject == "x")`` then raises ``DTypePromotionError`` (the NaN
    fill cannot be promoted) and pandas sees an unfamiliar dtype. Fixed-width unicode reads back
    as plain ``<U`` and works in every xarray idiom (selection, ``where``, ``groupby``, ``to_dataframe``).
    """
    text = [str(v) for v in values]
    return np.asarray(text, dtype=f"<U{max((len(s) for s in text), default=1) or 1}")


def recording_table_from(ds: xr.Dataset) -> pd.DataFrame:
    """The recordings table of a stored harmonized group, validated."""
    table = pd.DataFrame({c: ds[c].values.astype(object) if c in STRING_COLUMNS else ds[c].values
                          for c in RECORDING_COLUMNS})
    for c in STRING_COLUMNS:
        table[c] = table[c].astype(str)
    return RecordingTable.validate(table)
