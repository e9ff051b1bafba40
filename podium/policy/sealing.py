"""Content kept at rest (stored responses and conversations), sealed with the deployment's master
key when one is set (``$PODIUM_MASTER_KEY``, as for the encrypted credential file).

AES-256-GCM with a fresh 96-bit nonce per value. The key is derived once, with HKDF-SHA256,
from the master key and the purpose, so content keys and the credential file's key differ.
Each value is bound to the row it belongs to (its id is the associated data): a value moved to
another row fails to open. Values written before a key was set stay readable as they were.
"""

from __future__ import annotations

import base64
import os
from typing import Protocol

from podium.errors import PodiumError

PREFIX = "sealed1:"


class SealError(PodiumError):
    """A sealed value cannot be opened: no key, another key, or a damaged or moved value. The
    message names the cause, never the key."""

    def __init__(self, message: str) -> None:
        super().__init__("api_error", message, code="sealed_content")


class Sealer(Protocol):
    def seal(self, plain: bytes, row: str) -> str: ...

    def open(self, stored: str, row: str) -> bytes: ...


class Unsealed:
    """No master key: values are kept as they are."""

    def seal(self, plain: bytes, row: str) -> str:
        return plain.decode()

    def open(self, stored: str, row: str) -> bytes:
        if stored.startswith(PREFIX):
            raise SealError(
                "stored content is sealed, and this gateway has no master key to open it "
                "(set the variable access.secrets.master_key_env names)"
            )
        return stored.encode()


class MasterKeySealer:
    def __init__(self, master_key: str, purpose: str) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"podium/{purpose}".encode()
        ).derive(master_key.encode())
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, row: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain, row.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, stored: str, row: str) -> bytes:
        if not stored.startswith(PREFIX):
            return stored.encode()  # kept before a key was set
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.b64decode(stored[len(PREFIX) :], validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], row.encode())
        except (InvalidTag, ValueError):
            raise SealError(
                "stored content does not open with this gateway's master key (another key, "
                "or a damaged or moved value)"
            ) from None


def sealer_for(master_key: str | None, purpose: str) -> Sealer:
    return MasterKeySealer(master_key, purpose) if master_key else Unsealed()
