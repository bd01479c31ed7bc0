"""A fake SMTP server on aiosmtpd for offline development and tests."""
