"""Pandera contracts for the tables that pass between stages, checked on write and on read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pandera.xarray as px
from pandera.typing import Series

from aemg.vocabulary import UNLABELLED


class RecordingTable(pa.DataFrameModel):
    """One row per recording of a dataset; recordings lie end to end along ``sample``."""

    offset: Series[np.int64] = pa.Field(ge=0)
    n_times: Series[np.int64] = pa.Field(gt=0)
    subject: Series[str] = pa.Field(str_length={"min_value": 1})
    session: Series[str]
    repetition: Series[np.int64] = pa.Field(ge=0)
    source_file: Series[str] = pa.Field(str_length={"min_value": 1})
    source_sha256: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{64}$")

    @pa.dataframe_check
    def contiguous(cls, df: pd.DataFrame) -> bool:
        """Recording i starts exactly where recording i-1 ends (contiguous ragged layout)."""
        ends = (df["offset"] + df["n_times"]).to_numpy()
        return bool(len(df) == 0 or (df["offset"].iloc[0] == 0 and np.array_equal(df["offset"].to_numpy()[1:], ends[:-1])))


class ChannelTable(pa.DataFrameModel):
    channel: Series[str] = pa.Field(unique=True)
    angle_deg: Series[float] = pa.Field(nullable=True)
    distance: Series[float] = pa.Field(nullable=True)
    muscle: Series[str]


class EventTable(pa.DataFrameModel):
    """Contraction-event tokens: half-open sample indices into one recording."""

    recording: Series[np.int64] = pa.Field(ge=0)
    start: Series[np.int64] = pa.Field(ge=0)
    stop: Series[np.int64] = pa.Field(gt=0)
    dominant_channel: Series[np.int64] = pa.Field(ge=0)
    gesture: Series[np.int16] = pa.Field(ge=UNLABELLED)
    sentence: Series[np.int64] = pa.Field(ge=0)
    order: Series[np.int64] = pa.Field(ge=0)
    contraction: Series[np.int64] = pa.Field(ge=0)  # detected event a token was cut from (few-shot splits by it)
    onset_s: Series[float] = pa.Field(ge=0)
    duration_s: Series[float] = pa.Field(gt=0)
    subject: Series[str]

    @pa.dataframe_check
    def start_before_stop(cls, df: pd.DataFrame) -> Series[bool]:
        return df["start"] < df["stop"]


def harmonized_schema(n_chans: int | None = None) -> px.DatasetSchema:
    """Shape contract of one dataset group in the harmonized store."""
    return px.DatasetSchema(
        data_vars={
            "emg": px.DataVar(dtype=np.float32, dims=("sample", "channel")),
            "gesture": px.DataVar(dtype=np.int16, dims=("sample",)),
            "subject": px.DataVar(dims=("recording",)),
            "offset": px.DataVar(dtype=np.int64, dims=("recording",)),
            "n_times": px.DataVar(dtype=np.int64, dims=("recording",)),
            "quality": px.DataVar(dtype=np.uint8, dims=("recording", "channel")),
        },
        sizes={"channel": n_chans} if n_chans else None,
    )
