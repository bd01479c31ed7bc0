"""smtp-diag: staged diagnostics of one SMTP configuration."""

# One version, written here: pyproject.toml reads it (hatch's version source), so the installed package's
# metadata says the same. Not looked up with importlib.metadata at run time: that import alone cost a
# `smtp-diag check` ~15 ms of its start-up (issue 13). The OpenAPI document and `smtp-diag --version` show it.
__version__ = "0.1.0"
