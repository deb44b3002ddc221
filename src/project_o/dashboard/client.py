"""A dashboard session from Python: log in like a browser, then read the live feed.

Used by ``project-o bench overhead`` (the agent's throughput with a
dashboard watching) and by tests that check what the server refuses.
"""

from __future__ import annotations

import json
import threading
from types import TracebackType
from typing import Any, Self

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from project_o.dashboard.session import COOKIE_NAME

__all__ = ["LiveReader", "login_cookie"]


def login_cookie(url: str, token: str) -> str:
    """The session cookie a browser would get from a fresh one-time login URL."""
    with httpx.Client(base_url=url, timeout=10.0) as http:
        ticket = http.post("/ui/api/ticket", headers={"Authorization": f"Bearer {token}"})
        ticket.raise_for_status()
        login = http.get(ticket.json()["path"], follow_redirects=False)
        if login.status_code != 303:
            raise RuntimeError(f"login refused ({login.status_code}): {login.text}")
        return str(login.cookies[COOKIE_NAME])


class LiveReader:
    """Reads ``/ui/live`` on a thread of its own, counting messages, as a browser tab would."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._token = token
        self._socket: ClientConnection | None = None
        self._thread: threading.Thread | None = None
        self.messages = 0
        self.last: dict[str, Any] | None = None

    def __enter__(self) -> Self:
        cookie = login_cookie(self._url, self._token)
        ws_url = self._url.replace("http://", "ws://", 1) + "/ui/live"
        socket = connect(ws_url, origin=Origin(self._url),
                         additional_headers={"Cookie": f"{COOKIE_NAME}={cookie}"},
                         max_size=64 * 1024 * 1024)
        self._socket = socket.__enter__()  # the library's own context, closed in __exit__
        self._thread = threading.Thread(target=self._read, name="dashboard reader", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._socket is not None
        try:
            for raw in self._socket:
                self.last = json.loads(raw)
                self.messages += 1
        except (ConnectionClosed, OSError):  # closed: the reader's work is over
            return

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._socket is not None:
            self._socket.__exit__(exc_type, exc, traceback)
        if self._thread is not None:
            self._thread.join(timeout=10.0)
