"""Every read and write of a store goes through here: Icechunk repositories, local or on S3.

Stages meet only through this package: harmonize writes groups, tokenize reads them and writes
its own store, the model and the evaluation read tokens. See :mod:`aemg.store.repository` for
the transaction a write is, :mod:`aemg.store.location` for the URLs.
"""

import warnings

from aemg.store.location import StoreLike, StoreRef, as_ref, is_remote
from aemg.store.repository import (
    ForkWriter,
    GroupWrite,
    Published,
    group_writer,
    has_group,
    history,
    list_groups,
    open_arrays,
    open_events,
    open_group,
    open_repository,
    open_tree,
    pin,
    publish_group,
    snapshot_record,
    store_exists,
)
from aemg.store.tables import STRING_COLUMNS, recording_table_from, text_array

# Fixed-width unicode (see text_array) is zarr-python's "fixed_length_utf32" type, still marked unstable in v3.
warnings.filterwarnings("ignore", message=r"The data type \(FixedLengthUTF32")

__all__ = [
    "STRING_COLUMNS",
    "ForkWriter",
    "GroupWrite",
    "Published",
    "StoreLike",
    "StoreRef",
    "as_ref",
    "group_writer",
    "has_group",
    "history",
    "is_remote",
    "list_groups",
    "open_arrays",
    "open_events",
    "open_group",
    "open_repository",
    "open_tree",
    "pin",
    "publish_group",
    "recording_table_from",
    "snapshot_record",
    "store_exists",
    "text_array",
]
