"""`serve --demo`: bundled fake SMTP servers on loopback, offered on the page as one-click presets.

Four servers: anonymous (no TLS), authenticated (no TLS), STARTTLS with a self-signed certificate and
authentication, implicit TLS with authentication. The demo credentials are public by design.
"""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType
from typing import Any, Final

from fake_smtp import FakeSMTP

DEMO_USERNAME: Final = "demo"
DEMO_PASSWORD: Final = "demo-password"  # noqa: S105 -- the demo's published credential, not a secret
WRONG_PASSWORD: Final = "not-the-password"  # noqa: S105 -- deliberately wrong, for the failing preset
DEMO_FROM: Final = "app@demo.example"


class DemoServers:
    """Starts the demo servers; `presets` fill the page's form, `ports` must be allowed by the policy."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self.presets: list[dict[str, Any]] = []
        self.ports: frozenset[int] = frozenset()

    def __enter__(self) -> DemoServers:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _serve(self, **kwargs: Any) -> FakeSMTP:
        server = FakeSMTP(username=DEMO_USERNAME, password=DEMO_PASSWORD, **kwargs)
        server.start()
        self._stack.callback(server.stop)
        return server

    def _start(self) -> None:
        anonymous = self._serve(auth="none", tls="off")
        plain_auth = self._serve(auth="required", tls="off")
        starttls = self._serve(auth="required", tls="starttls")
        implicit = self._serve(auth="required", tls="implicit")
        assert starttls.ca_pem is not None and implicit.ca_pem is not None and implicit.tls_port is not None
        starttls_ca = starttls.ca_pem.read_text()
        implicit_ca = implicit.ca_pem.read_text()
        login = {"username": DEMO_USERNAME, "password": DEMO_PASSWORD}
        # The presets show every smtp-diag setting (TLS mode, CA bundle) against local servers: the generic profile.
        base = {"host": anonymous.host, "from_email": DEMO_FROM, "profile": "generic"}

        def preset(key: str, label: str, description: str, **config: Any) -> dict[str, Any]:
            return {"key": key, "label": label, "description": description, "config": {**base, **config}}

        self.presets = [
            preset("anonymous", "Anonymous relay", "No login, no TLS: works, with a warning.",
                   port=anonymous.port, tls_mode="none"),
            preset("authenticated", "Authenticated (plain)", "demo / demo-password, no TLS.",
                   port=plain_auth.port, tls_mode="none", **login),
            preset("wrong-password", "Wrong password", "The authenticated server with a bad password.",
                   port=plain_auth.port, tls_mode="none", username=DEMO_USERNAME, password=WRONG_PASSWORD),
            preset("starttls-ca", "STARTTLS + CA bundle", "Self-signed certificate, trusted through its CA.",
                   port=starttls.port, tls_mode="starttls", ca_bundle=starttls_ca, **login),
            preset("starttls-insecure", "STARTTLS + skip verify", "Self-signed certificate, verification skipped.",
                   port=starttls.port, tls_mode="starttls", insecure_skip_tls_verify=True, **login),
            preset("starttls-untrusted", "STARTTLS, untrusted", "Self-signed certificate and no CA bundle: fails.",
                   port=starttls.port, tls_mode="starttls", **login),
            preset("implicit", "Implicit TLS + CA bundle", "TLS from the first byte (like port 465).",
                   port=implicit.tls_port, tls_mode="implicit", ca_bundle=implicit_ca, **login),
        ]
        self.ports = frozenset({anonymous.port, plain_auth.port, starttls.port, implicit.tls_port})
