"""Zarr stores: one group per dataset, published atomically under a lock."""

from aemg.store.zarr_store import group_writer, list_groups, open_group, publish_group, store_lock, text_array

__all__ = ["group_writer", "list_groups", "open_group", "publish_group", "store_lock", "text_array"]
