"""The API token: where it comes from, and the check on every ``/v1/`` call.

Where the token comes from (:func:`resolve_token`), first match wins::

    $PROJECT_O_TOKEN            set by the operator            -> (token, created=False)
    VAULT/token                 written by an earlier start    -> (token, created=False)
    secrets.token_urlsafe(32)   first start: written to        -> (token, created=True)
                                VAULT/token, mode 0600           the caller prints the path

A token file that is a symbolic link, or that another user owns, is refused:
whoever controls it would choose the token.

How it is written, so a crash or a second process starting at the same
moment never leaves a half-written or a different token behind::

    VAULT/.token.<pid>.<rand>.tmp   O_CREAT|O_EXCL, mode 0600, write, fsync
        └─ link ──▶ VAULT/token     atomic, and fails if the file exists
                                    (then the other process's token is used)
    unlink the temp name; fsync VAULT so the new name survives a power cut

Each request then presents ``Authorization: Bearer <token>``;
:class:`BearerAuth` compares it in constant time and answers 401 with a
``WWW-Authenticate`` challenge (RFC 6750) otherwise.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from project_o.errors import InvalidArgument
from project_o.gateway.problems import APIError

__all__ = [
    "TOKEN_ENTROPY_BYTES",
    "TOKEN_ENV",
    "TOKEN_FILENAME",
    "BearerAuth",
    "bearer_token",
    "resolve_token",
]

logger = logging.getLogger(__name__)

TOKEN_ENV = "PROJECT_O_TOKEN"
TOKEN_FILENAME = "token"
# 256 bits, 43 characters: the size the `secrets` documentation recommends
# against brute force.
TOKEN_ENTROPY_BYTES = 32
# RFC 6750 §2.1 b64token: what a Bearer token may contain, so it survives a header.
_TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_REALM = "project-o"


def resolve_token(vault_dir: Path, env: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The API token and whether it was generated just now (print it once, then).

    ``env`` (default ``os.environ``) is where ``$PROJECT_O_TOKEN`` is looked
    up: the supervisor passes the secrets it took out of its environment.

    Raises :class:`~project_o.errors.InvalidArgument` if the environment
    variable or the token file holds something that cannot be a Bearer
    token.
    """
    from_env = (os.environ if env is None else env).get(TOKEN_ENV, "").strip()
    if from_env:
        return _checked(from_env, f"${TOKEN_ENV}"), False
    path = Path(vault_dir) / TOKEN_FILENAME
    existing = _read_token(path)
    if existing is not None:
        return existing, False
    token = secrets.token_urlsafe(TOKEN_ENTROPY_BYTES)
    if _publish_token(path, token):
        return token, True
    # Another process published first; its token is the one clients will use.
    winner = _read_token(path)
    assert winner is not None, "the token file was linked into place, so it exists"
    return winner, False


def _checked(token: str, origin: str) -> str:
    if not _TOKEN_SYNTAX.fullmatch(token):
        raise InvalidArgument(
            f"the API token from {origin} is not a valid Bearer token; expected letters, "
            "digits and -._~+/ (optionally ending in =); set a token like that, or "
            f"delete {origin} to have one generated"
        )
    return token


def _read_token(path: Path) -> str | None:
    try:
        # O_NOFOLLOW: a token file that is a symlink could point at a file
        # someone else controls, or make us print another file's contents.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise InvalidArgument(
            f"the token file {path} is a symbolic link; refused, since whoever can point it "
            "elsewhere chooses the API token - delete it to have a new token generated"
        ) from None
    with os.fdopen(fd, encoding="utf-8") as stream:
        info = os.fstat(stream.fileno())
        if info.st_uid != os.geteuid():
            raise InvalidArgument(
                f"the token file {path} belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.geteuid()}); refused, since its owner chooses the API token - "
                "delete it to have a new token generated"
            )
        text = stream.read()
    mode = info.st_mode & 0o777
    if mode & 0o077:
        logger.warning(
            "token file %s has mode %o: other users may read it; run `chmod 600 %s`",
            path,
            mode,
            path,
        )
    return _checked(text.strip(), str(path))


def _publish_token(path: Path, token: str) -> bool:
    """Write ``token`` to ``path`` unless it exists; True if ours is the one there."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never follow or reuse a file someone placed there; 0600 from birth,
    # so the token is never readable by others, not even for an instant.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(token + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        # link, not rename: rename would silently replace a token another
        # process published a moment ago; link refuses.
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    # The new directory entry is only durable once the directory itself is synced.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description=f"The API token: ${TOKEN_ENV}, or the `{TOKEN_FILENAME}` file in the vault.",
)


class BearerAuth:
    """A FastAPI dependency that lets a request through only with the right token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise InvalidArgument("the API token is empty; pass the token from resolve_token()")
        self._expected = _checked(token, "the token argument").encode("ascii")

    async def __call__(
        self,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    ) -> None:
        self.check(None if credentials is None else credentials.credentials)

    def check(
        self, presented: str | None, *, how: str = "send the header `Authorization: Bearer <token>`"
    ) -> None:
        """Raise a 401 :class:`APIError` unless ``presented`` is the API token.

        ``how`` tells a client that sent nothing how to send it.
        """
        if presented is None:
            raise _unauthorized(f"missing credentials: {how}", challenge=f'Bearer realm="{_REALM}"')
        # Header values arrive latin-1 decoded, so this encoding cannot fail for
        # them; a query parameter may hold any character, hence the fallback.
        # compare_digest keeps the comparison time independent of the content.
        encoded = presented.encode("latin-1", errors="replace")
        if not hmac.compare_digest(encoded, self._expected):
            raise _unauthorized(
                f"invalid token: use the one in ${TOKEN_ENV} or the vault's "
                f"`{TOKEN_FILENAME}` file",
                challenge=f'Bearer realm="{_REALM}", error="invalid_token"',
            )


def bearer_token(header: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, as HTTPBearer reads it.

    For the places that read the header without FastAPI's dependency (the
    fast path, the WebSocket upgrade): None where HTTPBearer finds none.
    """
    scheme, credentials = get_authorization_scheme_param(header)
    return credentials if header and credentials and scheme.lower() == "bearer" else None


def _unauthorized(message: str, *, challenge: str) -> APIError:
    return APIError(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge})
