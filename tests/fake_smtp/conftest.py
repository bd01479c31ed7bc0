from collections.abc import Iterator

import pytest

from fake_smtp import FakeSMTP

USER, PASSWORD = "alice", "correct horse battery staple"


@pytest.fixture
def full_server() -> Iterator[FakeSMTP]:
    """Authenticating, STARTTLS: a session goes through every step the server knows."""
    with FakeSMTP(auth="required", tls="starttls", username=USER, password=PASSWORD) as srv:
        yield srv
