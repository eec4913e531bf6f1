"""Where a store lives: a local folder or ``s3://bucket/prefix`` on any S3-compatible endpoint.

A store is named by a URL string (or a :class:`~pathlib.Path`); a :class:`StoreRef` adds the
snapshot a reader is pinned to, so that every task of one run reads the same version even while
another run commits. S3 settings come from the standard AWS environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``) plus
``AWS_ALLOW_HTTP`` for a plain-HTTP endpoint such as a loopback test server: the same variables
boto3, the AWS CLI and DVC read, so one environment serves all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import icechunk

from aemg.errors import AemgError

S3_SCHEME = "s3://"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class StoreRef:
    """A store URL and, optionally, the snapshot id (or tag) that reads are pinned to."""

    url: str
    snapshot: str | None = None

    def __str__(self) -> str:
        return self.url if self.snapshot is None else f"{self.url}@{self.snapshot}"


StoreLike = str | Path | StoreRef


def as_ref(store: StoreLike) -> StoreRef:
    """Any store argument as a StoreRef: local paths made absolute (tasks may run elsewhere)."""
    if isinstance(store, StoreRef):
        return store
    text = str(store)
    if text.startswith(S3_SCHEME):
        bucket = text[len(S3_SCHEME):].split("/", 1)[0]
        if not bucket:
            raise AemgError(f"store URL {text!r} names no bucket; write s3://bucket/prefix")
        return StoreRef(text.rstrip("/"))
    if "://" in text:
        raise AemgError(f"store URL {text!r}: only local paths and s3://bucket/prefix are supported")
    return StoreRef(str(Path(text).expanduser().resolve()))


def is_remote(store: StoreLike) -> bool:
    return as_ref(store).url.startswith(S3_SCHEME)


def local_path(store: StoreLike) -> Path | None:
    """The folder of a local store, None for a remote one."""
    ref = as_ref(store)
    return None if is_remote(ref) else Path(ref.url)


def storage_for(store: StoreLike) -> icechunk.Storage:
    """Icechunk storage of a store URL; S3 is configured from the AWS environment variables."""
    ref = as_ref(store)
    if not is_remote(ref):
        return icechunk.local_filesystem_storage(ref.url)
    bucket, _, prefix = ref.url[len(S3_SCHEME):].partition("/")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    return icechunk.s3_storage(
        bucket=bucket,
        prefix=prefix or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        endpoint_url=endpoint,
        allow_http=os.environ.get("AWS_ALLOW_HTTP", "").lower() in _TRUE,
        from_env=True,
        force_path_style=endpoint is not None,  # custom endpoints (MinIO, moto, Ceph) serve path-style buckets
    )
