"""Encryption at rest: AES-256-GCM seals for WAL records and checkpoints, and the keyring.

When a key is configured, the vault seals on write and opens on read; no
other process ever holds the key (instances get opened state from the
supervisor). The byte layouts are in docs/design.md ("Encryption at rest").

::

    PROJECT_O_VAULT_KEY="NEW OLD"  or  --vault-key-file FILE (one key a line)
         │  each key: 32 bytes as 64 hex digits, or base64 / base64url (43-44 chars)
         ▼
    Keyring ── current key (the first) ──► seal(nonce, plaintext, aad) ─► key id ‖ ciphertext+tag
            └─ every key, by key id ──────► open(key id, nonce, sealed, aad)

A key id is the first 4 bytes of SHA-256("project-o vault key id" ‖ key):
it names the key in every sealed record without revealing it, and a
keyring refuses two keys with the same id. Rotation: put the new key first
and keep the old one after it; new records and the next checkpoint are
sealed with the new key, older records stay readable with the old one
until the checkpoints that make them obsolete have truncated the WAL
(``project-o vault verify`` lists the key ids still in use).

Two different failures, never confused with each other or with damage:

* :class:`~project_o.errors.VaultKeyError`: the key a record names is not
  in the keyring (no key configured, or the wrong one). Nothing is read,
  nothing is truncated, nothing falls back: the operator must supply the key.
* :class:`SealBroken`: the key is there but the tag does not verify: the
  sealed bytes, or what the associated data binds them to (their sequence,
  their checkpoint's header), were altered. Callers report it as corruption.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
import re
import stat
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from project_o.errors import InvalidArgument, VaultKeyError

if TYPE_CHECKING:  # imported where a key is used: a vault without keys never loads the cipher
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_ENV",
    "KEY_ID_SIZE",
    "KEY_SIZE",
    "NONCE_SIZE",
    "SEAL_HEADER_SIZE",
    "TAG_SIZE",
    "Keyring",
    "NonceSequence",
    "SealBroken",
    "key_id_of",
    "load_keyring",
    "missing_key",
    "parse_keys",
    "sealed_key_id",
]

#: the environment variable holding the vault key(s)
KEY_ENV: Final = "PROJECT_O_VAULT_KEY"
KEY_SIZE: Final = 32  # AES-256
NONCE_SIZE: Final = 12  # 96 bits: GCM's native nonce size
TAG_SIZE: Final = 16
KEY_ID_SIZE: Final = 4
#: what precedes every ciphertext: key id (u32 BE) and nonce
SEAL_HEADER_SIZE: Final = KEY_ID_SIZE + NONCE_SIZE

_KEY_ID = struct.Struct(">I")
_KEY_ID_CONTEXT: Final = b"project-o vault key id\0"
_NONCE_SPACE: Final = 1 << (8 * NONCE_SIZE)
_HEX_KEY: Final = re.compile(r"[0-9a-fA-F]{64}")
_SEPARATORS: Final = re.compile(r"[\s,]+")


class SealBroken(Exception):
    """The tag of a sealed record did not verify under the key its id names."""


def key_id_of(key: bytes) -> int:
    """The 32-bit id a key is known by in sealed records."""
    return int(_KEY_ID.unpack_from(hashlib.sha256(_KEY_ID_CONTEXT + key).digest())[0])


class Keyring:
    """The vault's keys: the first seals, every one opens what it sealed.

    Thread-safe: AESGCM objects hold no per-call state.
    """

    def __init__(self, keys: Iterable[bytes]) -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._invalid_tag = InvalidTag
        ordered = list(keys)
        if not ordered:
            raise InvalidArgument("a keyring needs at least one key")
        self._ciphers: dict[int, AESGCM] = {}
        for key in ordered:
            if not isinstance(key, bytes) or len(key) != KEY_SIZE:
                raise InvalidArgument(f"a vault key is {KEY_SIZE} bytes, got {len(key)}")
            key_id = key_id_of(key)
            if key_id in self._ciphers:
                raise InvalidArgument(
                    f"two keys of the keyring have the id {key_id:08x}: the same key twice?")
            self._ciphers[key_id] = AESGCM(key)
        self.current_id = key_id_of(ordered[0])
        self._current = self._ciphers[self.current_id]

    @property
    def ids(self) -> tuple[int, ...]:
        """Every key id, the current one first."""
        return tuple(self._ciphers)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """``key id ‖ nonce ‖ ciphertext ‖ tag`` of ``plaintext`` under the current key.

        ``nonce`` must never have been used with the current key before
        (see :class:`NonceSequence`); ``aad`` is authenticated, not stored.
        """
        header = _KEY_ID.pack(self.current_id) + nonce
        try:
            return header + self._current.encrypt(nonce, plaintext, header + aad)
        except OverflowError as exc:  # AES-GCM here takes at most 2**31 - 1 bytes
            raise InvalidArgument(f"{len(plaintext)} bytes is too large to seal ({exc}); "
                                  "keep large data out of single writes") from None

    def open(self, sealed: bytes | bytearray | memoryview, aad: bytes, where: str) -> bytes:
        """The plaintext of what :meth:`seal` returned, checked against ``aad``.

        Raises :class:`VaultKeyError` if the key it names is not here,
        :class:`SealBroken` if the tag does not verify.
        """
        view = memoryview(sealed)
        if len(view) < SEAL_HEADER_SIZE + TAG_SIZE:
            raise SealBroken(f"{len(view)} bytes is too short for a sealed payload")
        header = bytes(view[:SEAL_HEADER_SIZE])
        (key_id,) = _KEY_ID.unpack_from(header)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise missing_key(key_id, where, self)
        try:
            return cipher.decrypt(header[KEY_ID_SIZE:], view[SEAL_HEADER_SIZE:], header + aad)
        except self._invalid_tag:
            # (A wrong key that shares the right key's id, one chance in 2**32, lands here too.)
            raise SealBroken(
                f"the authentication tag does not verify under key {key_id:08x}: the sealed "
                "bytes, or the position they are bound to, were altered") from None


def sealed_key_id(sealed: bytes | bytearray | memoryview) -> int:
    """The key id a sealed payload names (no key needed)."""
    return int(_KEY_ID.unpack_from(sealed)[0])


def missing_key(key_id: int, where: str, keyring: Keyring | None) -> VaultKeyError:
    """The error for a sealed payload whose key is not configured."""
    if keyring is None:
        have = f"no key is configured (${KEY_ENV} or --vault-key-file)"
    else:
        have = "the configured keys are " + ", ".join(f"{i:08x}" for i in keyring.ids)
    return VaultKeyError(
        f"{where} is sealed with key {key_id:08x}, but {have}; supply that key (a rotated-out "
        "key stays needed until `project-o vault verify` no longer lists it). Nothing was "
        "read past it and nothing was discarded")


class NonceSequence:
    """Nonces for one writer: a random 96-bit start, then +1 per seal (mod 2**96).

    Why not a random nonce per record: with random nonces GCM stays safe
    only up to about 2**32 seals per key (birthday bound at 2**-32), which
    a busy WAL reaches within days. Why not the WAL sequence: a torn record
    is cut and its sequence used again for other data, which would reuse
    the nonce. A counter from a random start never repeats within one
    writer, and two writers (each open of the WAL, each checkpoint) collide
    only if their ranges overlap: probability about (writers x seals) /
    2**96, negligible. The counter costs one integer add per record.
    """

    def __init__(self, start: int | None = None) -> None:
        self._next = int.from_bytes(os.urandom(NONCE_SIZE)) if start is None else start

    def take(self) -> bytes:
        """The next nonce (callers serialise: the WAL calls this under its lock)."""
        value = self._next
        self._next = (value + 1) % _NONCE_SPACE
        return value.to_bytes(NONCE_SIZE)


# -- configuration ---------------------------------------------------------


def parse_keys(text: str, origin: str) -> list[bytes]:
    """The keys in ``text``: separated by whitespace or commas, ``#`` comments skipped."""
    lines = (line.partition("#")[0] for line in text.splitlines())
    specs = [spec for line in lines for spec in _SEPARATORS.split(line) if spec]
    if not specs:
        raise InvalidArgument(f"{origin} holds no vault key")
    return [_decode_key(spec, origin, index) for index, spec in enumerate(specs, 1)]


def _decode_key(spec: str, origin: str, index: int) -> bytes:
    if _HEX_KEY.fullmatch(spec):
        return bytes.fromhex(spec)
    try:
        padded = spec + "=" * (-len(spec) % 4)
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise InvalidArgument(
            f"key {index} in {origin} is not a {KEY_SIZE}-byte key: give 64 hex digits or "
            f"{KEY_SIZE} bytes in base64 (e.g. `python3 -c \"import secrets; "
            "print(secrets.token_hex(32))\"`)")
    return key


def load_keyring(key_file: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring from ``key_file`` or ``$PROJECT_O_VAULT_KEY``; ``None`` if neither is set.

    Setting both is an error (which one should win would be a guess). A key
    file must be a regular file, not a symbolic link, owned by this user and
    readable by nobody else.
    """
    env = os.environ if environ is None else environ
    from_env = env.get(KEY_ENV, "").strip()
    if key_file is not None and from_env:
        raise InvalidArgument(f"both ${KEY_ENV} and a vault key file are set; use one")
    if key_file is not None:
        return Keyring(parse_keys(_read_key_file(Path(key_file)), str(key_file)))
    if from_env:
        return Keyring(parse_keys(from_env, f"${KEY_ENV}"))
    return None


def _read_key_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidArgument(f"the vault key file {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidArgument(f"the vault key file {path} is a symbolic link; refused, "
                                  "since whoever can point it elsewhere chooses the key") from None
        raise InvalidArgument(f"cannot read the vault key file {path}: {exc}") from None
    with os.fdopen(fd, encoding="utf-8") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"the vault key file {path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise InvalidArgument(f"the vault key file {path} belongs to uid {info.st_uid}, "
                                  f"not to this user (uid {os.geteuid()}); refused")
        if info.st_mode & 0o077:
            raise InvalidArgument(f"the vault key file {path} has mode "
                                  f"{stat.S_IMODE(info.st_mode):o}: others may read the key; "
                                  f"run `chmod 600 {path}`")
        return stream.read()
