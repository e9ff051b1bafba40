"""Files kept for OpenAI's and Anthropic's Files APIs: the JSON lines a batch is created from,
the output and error files made from a batch's results, images a Responses request names by
file id, and any file uploaded through Anthropic's API (podium/api/anthropic_files.py). Both APIs
read the same files: one table, two views of it.

A file belongs to the owner of the key that uploaded it (or whose batch made it): every read
and delete is filtered by owner. Its content is sealed at rest like a batch's requests
(podium/policy/sealing.py), bound to the file's id, and it is deleted ``batches.retention_days``
after it was made. Its media type (``mime_type``) is kept beside it: given by the uploader, or
read from its first bytes (:func:`sniff_mime_type`).
"""

from __future__ import annotations

import base64
import codecs
from dataclasses import astuple, dataclass
from typing import Any

from podium.batches.settings import BatchSettings
from podium.store.tables import SealedTables


@dataclass(slots=True)
class StoredFile:
    file_id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    created_at: float
    expires_at: float
    batch_id: str | None  # the batch whose results it holds, for an output or error file
    mime_type: str  # what the file is: "application/pdf", "image/png", "text/plain", ...


_FILE = "file_id, owner, purpose, filename, bytes, created_at, expires_at, batch_id, mime_type"
# Files kept as the text they are (a batch's JSON lines); any other (an image) is kept as
# base64, since the column holds text and an unsealed file is kept as it is.
TEXT_PURPOSES = frozenset({"batch", "batch_output"})


def _as_text(purpose: str, content: bytes) -> bytes:
    return content if purpose in TEXT_PURPOSES else base64.b64encode(content)


# The leading bytes of the formats a worker reads whole (documents and images), and their types.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
SIGNED_TYPES = frozenset({media_type for _, media_type in SIGNATURES} | {"image/webp"})


def signed_type(content: bytes) -> str | None:
    """The type a file's first bytes say it is (PDF, PNG, JPEG, GIF, WebP), else None."""
    for signature, media_type in SIGNATURES:
        if content.startswith(signature):
            return media_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_type(content: bytes) -> str | None:
    """The media type of an image file a worker reads (PNG, JPEG, GIF or WebP), else None."""
    media_type = signed_type(content)
    return media_type if media_type is not None and media_type.startswith("image/") else None


def is_text(content: bytes, chunk: int = 1 << 20) -> bool:
    """Whether the bytes are UTF-8 text (without NUL, which no text holds): read a chunk at a
    time, so a large upload is not copied whole into a string to find out."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(content), chunk):
            piece = content[start : start + chunk]
            if b"\x00" in piece:
                return False
            decoder.decode(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def sniff_mime_type(content: bytes) -> str:
    """A file's media type from its bytes: PDF, PNG, JPEG, GIF or WebP by their signatures,
    ``text/plain`` for UTF-8 text, else ``application/octet-stream``."""
    return signed_type(content) or (
        "text/plain" if is_text(content) else "application/octet-stream"
    )


class FileStore(SealedTables[BatchSettings]):
    async def create(
        self,
        file_id: str,
        owner: str,
        purpose: str,
        filename: str,
        content: bytes,
        *,
        batch_id: str | None = None,
        expires_in: float | None = None,
        mime_type: str | None = None,
    ) -> StoredFile:
        """Keep a file, for ``expires_in`` seconds when its owner asked for less than the
        deployment's ``retention_days``, with its ``mime_type`` (read from its bytes when not
        given). A file made from a batch has an id of its own that replicas agree on: two that
        make it at once keep the first (ON CONFLICT DO NOTHING)."""
        now = self._clock()
        kept = self.settings.retention_days * 86400
        expires = now + (kept if expires_in is None else min(kept, expires_in))
        media_type = mime_type or sniff_mime_type(content)
        sealed = self.sealer.seal(_as_text(purpose, content), file_id)
        stored = StoredFile(
            file_id, owner, purpose, filename, len(content), now, expires, batch_id, media_type
        )
        await self.db.execute(
            f"INSERT INTO files ({_FILE}, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (file_id) DO NOTHING",
            (*astuple(stored), sealed),  # the columns of _FILE, in order
        )
        return stored

    async def get(self, owner: str, file_id: str) -> StoredFile | None:
        rows = await self.db.execute(
            f"SELECT {_FILE} FROM files WHERE file_id = ? AND owner = ? AND expires_at > ?",
            (file_id, owner, self._clock()),
        )
        return StoredFile(*rows[0]) if rows else None

    async def content(self, owner: str, file_id: str) -> bytes | None:
        rows = await self.db.execute(
            "SELECT content, purpose FROM files WHERE file_id = ? AND owner = ? AND expires_at > ?",
            (file_id, owner, self._clock()),
        )
        if not rows:
            return None
        kept = self.sealer.open(rows[0][0], file_id)
        return kept if rows[0][1] in TEXT_PURPOSES else base64.b64decode(kept)

    async def page(
        self,
        owner: str,
        limit: int,
        *,
        after: str | None = None,
        ascending: bool = False,
        purpose: str | None = None,
        ids: list[str] | None = None,
    ) -> list[StoredFile]:
        """The owner's files by creation, ``limit`` of them past the file ``after``; only those
        of ``ids`` when given."""
        where = "owner = ? AND expires_at > ?"
        params: list[Any] = [owner, self._clock()]
        if purpose is not None:
            where += " AND purpose = ?"
            params.append(purpose)
        if ids is not None:
            if not ids:
                return []
            where += f" AND file_id IN ({', '.join('?' * len(ids))})"
            params += ids
        compare, order = (">", "ASC") if ascending else ("<", "DESC")
        if after is not None:
            # Ties in created_at are ordered by id, so a page never skips or repeats a file.
            where += (
                f" AND (created_at, file_id) {compare} (SELECT created_at, file_id FROM files "
                "WHERE file_id = ? AND owner = ?)"
            )
            params += [after, owner]
        rows = await self.db.execute(
            f"SELECT {_FILE} FROM files WHERE {where} "
            f"ORDER BY created_at {order}, file_id {order} LIMIT ?",
            (*params, limit),
        )
        return [StoredFile(*row) for row in rows]

    async def delete(self, owner: str, file_id: str) -> bool:
        rows = await self.db.execute(
            "DELETE FROM files WHERE file_id = ? AND owner = ? RETURNING 1", (file_id, owner)
        )
        return bool(rows)

    async def made_from(self, batch_id: str) -> list[StoredFile]:
        """The files already made from a batch's results (its output and error files)."""
        rows = await self.db.execute(
            f"SELECT {_FILE} FROM files WHERE batch_id = ? ORDER BY file_id", (batch_id,)
        )
        return [StoredFile(*row) for row in rows]

    async def sweep(self) -> int:
        rows = await self.db.execute(
            "DELETE FROM files WHERE expires_at <= ? RETURNING 1", (self._clock(),)
        )
        return len(rows)
