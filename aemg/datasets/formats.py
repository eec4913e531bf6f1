"""The file formats a dataset spec may name: the contract between specs and the harmonize readers.

A spec is checked against this list when it is loaded, without importing the readers (which
need the spec type): each name here has exactly one reader in ``aemg.harmonize.readers.READERS``,
and a test holds the two to the same names.
"""

FORMATS: tuple[str, ...] = ("int16-dat", "delimited-text", "mat-v5", "mat-v73", "flexemg-mat", "wfdb", "json-samples")
