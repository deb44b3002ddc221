"""Who may call ``/ui/``: holders of a session cookie, from the dashboard's own pages.

::

    every /ui/api call     cookie valid            else 401
                           Sec-Fetch-Site is same-origin / none (or absent: not a browser)
                                                   else 403
    POST/PUT/DELETE        header X-Project-O-UI: 1   else 403
    WS /ui/live            cookie valid, and Origin is this very host   else closed 1008

SameSite=Strict already keeps the cookie off cross-site requests; the
checks here hold even for a browser that ignores it. A cross-site page
cannot set a custom header without a CORS preflight, which this server
never grants, so the header proves the call came from our own script.
"""

from __future__ import annotations

from typing import Final

from fastapi import Request
from starlette.requests import HTTPConnection

from project_o.dashboard.session import COOKIE_NAME, SessionSigner
from project_o.gateway.problems import APIError

__all__ = ["CSRF_HEADER", "SAFE_METHODS", "SessionGuard"]

CSRF_HEADER: Final = "X-Project-O-UI"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE: Final = frozenset({"same-origin", "none"})


class SessionGuard:
    """A FastAPI dependency for ``/ui/api``; :meth:`allows_socket` for the live socket."""

    def __init__(self, signer: SessionSigner) -> None:
        self.signer = signer

    async def __call__(self, request: Request) -> None:
        self.check(request)
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
            raise APIError(403, "Forbidden", f"a state-changing call needs the {CSRF_HEADER} "
                           "header, which only the dashboard's own pages send")

    def check(self, connection: HTTPConnection) -> None:
        """Raise 401/403 unless ``connection`` carries a valid session from our own pages."""
        site = connection.headers.get("sec-fetch-site")
        if site is not None and site not in _SAME_SITE:
            raise APIError(403, "Forbidden", f"cross-site request refused ({site})")
        if not self.signer.valid(connection.cookies.get(COOKIE_NAME)):
            raise APIError(401, "Unauthorized", "no dashboard session: run `project-o "
                           "dashboard` and open the URL it prints")

    def allows_socket(self, connection: HTTPConnection) -> bool:
        """True if a WebSocket handshake comes with a session from this very origin."""
        try:
            self.check(connection)
        except APIError:
            return False
        origin = connection.headers.get("origin")
        host = connection.headers.get("host")
        return origin is not None and host is not None and origin in (
            f"http://{host}", f"https://{host}")
