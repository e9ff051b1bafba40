"""An encrypted file of provider credentials, unlocked by a master key from the environment.

The whole mapping (names included: they say which vendors you use) is one AES-256-GCM
ciphertext. Its key is derived from ``$PODIUM_MASTER_KEY`` with scrypt and a random salt kept in
the file's header, which is authenticated too (GCM associated data), so a damaged or
tampered file fails to open instead of yielding wrong secrets. Writes go to a temporary file
that replaces the old one, readable by its owner only.

Workers keep naming credentials by variable (``api_key_env: OPENAI_API_KEY``); with a master key
set, the gateway looks in the environment first, then here (:func:`secret_sources`).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from podium.secrets import ChainedSecrets, EnvironmentSecrets, SecretSource

FORMAT = "podium-secrets/1"
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MIN_MASTER_KEY = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class SecretStoreError(Exception):
    """The store cannot be opened or changed; the message says why (never a secret)."""


def generate_master_key() -> str:
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


def _derive(master: str, salt: bytes, n: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=SCRYPT_R, p=SCRYPT_P).derive(master.encode())


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise SecretStoreError(
            f"bad secret name {name[:40]!r}: use letters, digits and _ (like an environment "
            "variable), not starting with a digit"
        )
    return name


class EncryptedSecrets:
    """A :class:`~podium.secrets.SecretSource` over the encrypted file; decrypted once, on first
    use, and kept in memory."""

    def __init__(self, path: Path, master_key: str) -> None:
        if len(master_key) < MIN_MASTER_KEY:
            raise SecretStoreError(
                f"the master key is too short ({len(master_key)} characters; at least "
                f"{MIN_MASTER_KEY}). Make one with `podium secrets generate-key`."
            )
        self.path = path
        self._master = master_key
        self._values: dict[str, str] | None = None

    def _read(self) -> dict[str, str]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            document = orjson.loads(raw)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError("unknown format")
            salt, nonce = _unb64(document["salt"]), _unb64(document["nonce"])
            ciphertext = _unb64(document["ciphertext"])
            n = int(document["n"])
        except (ValueError, KeyError, TypeError):
            raise SecretStoreError(f"{self.path} is not a Podium secret store (damaged?)") from None
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            plain = AESGCM(_derive(self._master, salt, n)).decrypt(
                nonce, ciphertext, _header(salt, nonce, n)
            )
        except (InvalidTag, ValueError):
            raise SecretStoreError(
                f"{self.path} cannot be opened with this master key: the key is wrong or the "
                "file was changed"
            ) from None
        values = orjson.loads(plain)
        return {str(name): str(value) for name, value in values.items()}

    def _write(self, values: Mapping[str, str]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(_derive(self._master, salt, SCRYPT_N)).encrypt(
            nonce, orjson.dumps(dict(values)), _header(salt, nonce, SCRYPT_N)
        )
        document = {
            "format": FORMAT,
            "kdf": "scrypt",
            "n": SCRYPT_N,
            "salt": _b64(salt),
            "nonce": _b64(nonce),
            "ciphertext": _b64(sealed),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
        self._values = dict(values)

    def values(self) -> dict[str, str]:
        if self._values is None:
            self._values = self._read()
        return self._values

    def get(self, name: str) -> str | None:
        return self.values().get(name) or None

    def names(self) -> list[str]:
        return sorted(self.values())

    def set(self, name: str, value: str) -> None:
        check_name(name)
        if not value:
            raise SecretStoreError("refusing an empty secret")
        updated = dict(self._read())
        updated[name] = value
        self._write(updated)

    def remove(self, name: str) -> bool:
        updated = dict(self._read())
        if updated.pop(name, None) is None:
            return False
        self._write(updated)
        return True


def _header(salt: bytes, nonce: bytes, n: int) -> bytes:
    return f"{FORMAT}|scrypt|{n}|{_b64(salt)}|{_b64(nonce)}".encode()


def secret_sources(
    path: Path, master_key_env: str, environ: Mapping[str, str] | None = None
) -> SecretSource:
    """The environment, then the encrypted store when a master key is set."""
    environ = os.environ if environ is None else environ
    env = EnvironmentSecrets(environ)
    master = environ.get(master_key_env)
    if not master:
        return env
    return ChainedSecrets([env, EncryptedSecrets(path, master)])
