"""Errors that name the dataset, the file and the reason, so a user can act on one line."""

from __future__ import annotations


class AemgError(Exception):
    """Base class: every failure the CLI reports as a one-line reason."""


class DatasetError(AemgError):
    """A dataset's input (spec, download, file content) is unusable."""

    def __init__(self, dataset: str, reason: str, file: str | None = None, fix: str | None = None):
        self.dataset, self.file, self.reason, self.fix = dataset, file, reason, fix
        where = f"{dataset}" + (f": {file}" if file else "")
        message = f"{where}: {reason}" + (f" Fix: {fix}" if fix else "")
        super().__init__(message)

    def __reduce__(self):  # pickles across Dask workers with its fields, not just the message
        return (type(self), (self.dataset, self.reason, self.file, self.fix))
