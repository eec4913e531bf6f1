"""Zarr stores: one group per dataset, published atomically under a lock."""

from aemg.store.zarr_store import list_groups, open_group, publish_group, store_lock

__all__ = ["list_groups", "open_group", "publish_group", "store_lock"]
