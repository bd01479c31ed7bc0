"""smtp-diag: staged diagnostics of one SMTP configuration."""

__version__ = "0.1.0"
