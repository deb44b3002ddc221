"""What ``/ui/`` refuses, against a real supervisor: used tickets, no cookie, other sites."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from project_o.dashboard.client import login_cookie
from project_o.dashboard.guard import CSRF_HEADER
from project_o.dashboard.session import COOKIE_NAME
from tests.dashboard.conftest import Watched
from tests.supervisor.harness import TOKEN, Stack


def base(stack: Stack) -> str:
    assert stack.http is not None
    return str(stack.http.base_url).rstrip("/")


def ticket_path(stack: Stack) -> str:
    response = httpx.post(f"{base(stack)}/ui/api/ticket",
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return str(response.json()["path"])


def test_a_ticket_logs_in_once_with_a_strict_http_only_cookie(stack: Stack) -> None:
    path = ticket_path(stack)
    first = httpx.get(base(stack) + path, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/ui/"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    again = httpx.get(base(stack) + path, follow_redirects=False)
    assert again.status_code == 401 and "set-cookie" not in again.headers
    assert httpx.get(f"{base(stack)}/ui/login?ticket=made-up").status_code == 401
    assert httpx.get(f"{base(stack)}/ui/login").status_code == 401


def test_tickets_need_the_api_token(stack: Stack) -> None:
    url = f"{base(stack)}/ui/api/ticket"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_without_a_cookie_nothing_is_served(stack: Stack) -> None:
    for path in ("/ui/", "/ui/api/versions", "/ui/api/events", "/ui/api/bandit"):
        assert httpx.get(base(stack) + path).status_code == 401, path
    with pytest.raises(InvalidStatus):
        connect(base(stack).replace("http", "ws") + "/ui/live", origin=base(stack))  # type: ignore[arg-type]


def test_with_a_cookie_data_is_served(stack: Stack) -> None:
    cookies = {COOKIE_NAME: login_cookie(base(stack), TOKEN)}
    versions = httpx.get(f"{base(stack)}/ui/api/versions", cookies=cookies)
    assert versions.status_code == 200
    assert versions.json()["total"] >= 1
    page = httpx.get(f"{base(stack)}/ui/", cookies=cookies)
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]


def test_cross_site_requests_are_refused_even_with_the_cookie(stack: Stack) -> None:
    cookies = {COOKIE_NAME: login_cookie(base(stack), TOKEN)}
    refused = httpx.get(f"{base(stack)}/ui/api/versions", cookies=cookies,
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    # a state-changing call without the header a foreign page cannot send
    logout = f"{base(stack)}/ui/api/logout"
    assert httpx.post(logout, cookies=cookies).status_code == 403
    assert httpx.post(logout, cookies=cookies, headers={CSRF_HEADER: "1"}).status_code == 204
    # the live socket from another origin
    header = {"Cookie": f"{COOKIE_NAME}={cookies[COOKIE_NAME]}"}
    with pytest.raises(InvalidStatus):
        connect(base(stack).replace("http", "ws") + "/ui/live",
                origin="http://evil.example", additional_headers=header)  # type: ignore[arg-type]
    with connect(base(stack).replace("http", "ws") + "/ui/live", origin=base(stack),  # type: ignore[arg-type]
                 additional_headers=header, max_size=None) as socket:
        assert '"type": "snapshot"' in str(socket.recv(timeout=30))


ATTACK = """<!doctype html><meta charset=utf-8><title>elsewhere</title><script>
const target = "TARGET";
window.outcome = {fetch: "pending", socket: "pending"};
fetch(target + "/ui/api/versions", {credentials: "include"})
  .then(r => { window.outcome.fetch = "read " + r.status; })
  .catch(() => { window.outcome.fetch = "blocked"; });
const ws = new WebSocket(target.replace("http", "ws") + "/ui/live");
ws.onmessage = () => { window.outcome.socket = "data"; };
ws.onclose = () => { if (window.outcome.socket === "pending") window.outcome.socket = "closed"; };
</script>"""


@pytest.fixture
def other_site(tmp_path: Path, stack: Stack) -> Iterator[str]:
    """A page on http://localhost:PORT: another site than http://127.0.0.1:PORT."""
    (tmp_path / "index.html").write_text(ATTACK.replace("TARGET", base(stack)))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def test_a_page_on_another_site_reads_nothing_in_a_logged_in_browser(
        stack: Stack, page: Watched, other_site: str) -> None:
    page.page.goto(login_url_for(stack))
    page.page.wait_for_url("**/ui/")
    page.page.goto(other_site)
    page.page.wait_for_function("() => window.outcome.fetch !== 'pending' && "
                                "window.outcome.socket !== 'pending'", timeout=30_000)
    outcome = page.page.evaluate("window.outcome")
    assert outcome == {"fetch": "blocked", "socket": "closed"}


def login_url_for(stack: Stack) -> str:
    return base(stack) + ticket_path(stack)


def test_approving_needs_the_header_and_reaches_the_evolution_control(stack: Stack) -> None:
    cookies = {COOKIE_NAME: login_cookie(base(stack), TOKEN)}
    url = f"{base(stack)}/ui/api/experiments/no-such-experiment/approve"
    assert httpx.post(url, cookies=cookies).status_code == 403
    answered = httpx.post(url, cookies=cookies, headers={CSRF_HEADER: "1"})
    assert answered.status_code == 404  # past the guard: the evolution control knows no such experiment
    assert answered.json()["error"]["type"] == "UnknownExperiment"
