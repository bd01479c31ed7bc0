"""smtp-diag: staged diagnostics of one SMTP configuration."""

from importlib.metadata import PackageNotFoundError, version

# One version: pyproject.toml's, as installed. The OpenAPI document and `smtp-diag --version` show this.
try:
    __version__ = version("smtp-diag")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
