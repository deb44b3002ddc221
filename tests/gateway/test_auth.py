"""The Bearer token: the HTTP check, and where resolve_token finds or makes it."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from project_o.errors import InvalidArgument
from project_o.gateway import TOKEN_ENV, TOKEN_FILENAME, create_app, resolve_token

from .conftest import TOKEN, ScriptedService

# -- the check on every /v1/ call -------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/requests"), ("GET", "/v1/status")])
async def test_missing_token_is_401_with_a_challenge(
    anonymous: httpx.AsyncClient, service: ScriptedService, method: str, path: str
) -> None:
    calls_before = len(service.calls)
    response = await anonymous.request(method, path, json={"input": 1})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="project-o"'
    assert response.json()["error"]["type"] == "Unauthorized"
    assert "Authorization: Bearer" in response.json()["error"]["message"]
    assert len(service.calls) == calls_before


@pytest.mark.anyio
@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer wrong", f"Basic {TOKEN}", TOKEN, "Bearer"],
    ids=["longer", "shorter", "other", "basic-scheme", "no-scheme", "no-credentials"],
)
async def test_wrong_token_is_401(anonymous: httpx.AsyncClient, header: str) -> None:
    response = await anonymous.get("/v1/status", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


@pytest.mark.anyio
async def test_wrong_token_challenge_says_invalid_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/status", headers={"Authorization": "Bearer nope"})
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_right_token_passes_whatever_the_scheme_case(
    anonymous: httpx.AsyncClient, scheme: str
) -> None:
    response = await anonymous.get("/v1/status", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200


@pytest.mark.anyio
async def test_auth_is_checked_before_the_body_is_parsed(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(
        "/v1/requests", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401


@pytest.mark.anyio
async def test_healthz_needs_no_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("token", ["", "has space", "new\nline", "ünïcode"])
def test_app_refuses_a_token_no_client_could_send(token: str) -> None:
    with pytest.raises(InvalidArgument):
        create_app(ScriptedService(), token=token)


# -- resolve_token -----------------------------------------------------------


@pytest.fixture
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.mark.usefixtures("no_env_token")
def test_first_call_creates_a_0600_token_file_and_later_calls_reuse_it(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    token, created = resolve_token(vault)
    assert created
    path = vault / TOKEN_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    assert len(token) >= 43  # 32 random bytes, base64url
    assert resolve_token(vault) == (token, False)
    assert [p.name for p in vault.iterdir()] == [TOKEN_FILENAME]  # no temp file left behind


@pytest.mark.usefixtures("no_env_token")
def test_each_vault_gets_its_own_token(tmp_path: Path) -> None:
    first, _ = resolve_token(tmp_path / "a")
    second, _ = resolve_token(tmp_path / "b")
    assert first != second


def test_environment_token_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / TOKEN_FILENAME).write_text("from-file\n")
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert resolve_token(tmp_path) == ("from-env", False)


def test_environment_token_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    resolve_token(tmp_path)
    assert not (tmp_path / TOKEN_FILENAME).exists()


def test_environment_token_that_cannot_be_sent_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "two words")
    with pytest.raises(InvalidArgument, match=TOKEN_ENV):
        resolve_token(tmp_path)


@pytest.mark.usefixtures("no_env_token")
def test_empty_token_file_is_refused_not_silently_replaced(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILENAME).write_text("\n")
    with pytest.raises(InvalidArgument, match="delete"):
        resolve_token(tmp_path)


@pytest.mark.usefixtures("no_env_token")
def test_loose_permissions_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / TOKEN_FILENAME
    path.write_text("shared-token\n")
    path.chmod(0o644)
    assert resolve_token(tmp_path) == ("shared-token", False)
    assert "chmod 600" in caplog.text


@pytest.mark.usefixtures("no_env_token")
def test_a_token_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    chosen = tmp_path / "elsewhere"
    chosen.write_text("attacker-chosen-token\n")
    chosen.chmod(0o600)
    (tmp_path / TOKEN_FILENAME).symlink_to(chosen)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        resolve_token(tmp_path)


@pytest.mark.usefixtures("no_env_token")
@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_token_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILENAME
    path.write_text("planted-token\n")
    path.chmod(0o600)
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(InvalidArgument, match="belongs to uid 65534"):
        resolve_token(tmp_path)


def _resolve_in_child(vault: str, barrier: Any, results: Any) -> None:
    barrier.wait()  # all of them call resolve_token at the same moment
    results.put(resolve_token(Path(vault)))


# Enough processes to make the race likely, few enough for a 2-core box.
RACERS = 6
RACE_TIMEOUT_S = 60


@pytest.mark.usefixtures("no_env_token")
def test_processes_starting_together_agree_on_one_token(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(RACERS), context.Queue()
    racers = [
        context.Process(target=_resolve_in_child, args=(str(tmp_path), barrier, results))
        for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=RACE_TIMEOUT_S) for _ in racers]
    for racer in racers:
        racer.join(RACE_TIMEOUT_S)
        assert racer.exitcode == 0
    assert len({token for token, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    assert (tmp_path / TOKEN_FILENAME).read_text().strip() == outcomes[0][0]
