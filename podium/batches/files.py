"""Files kept for OpenAI's Files API: the JSON lines a batch is created from, the output and
error files made from a batch's results, and images a Responses request names by file id.

A file belongs to the owner of the key that uploaded it (or whose batch made it): every read
and delete is filtered by owner. Its content is sealed at rest like a batch's requests
(podium/policy/sealing.py), bound to the file's id, and it is deleted ``batches.retention_days``
after it was made.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
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


_FILE = "file_id, owner, purpose, filename, bytes, created_at, expires_at, batch_id"
# Files kept as the text they are (a batch's JSON lines); any other (an image) is kept as
# base64, since the column holds text and an unsealed file is kept as it is.
TEXT_PURPOSES = frozenset({"batch", "batch_output"})


def _as_text(purpose: str, content: bytes) -> bytes:
    return content if purpose in TEXT_PURPOSES else base64.b64encode(content)


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
    ) -> StoredFile:
        """Keep a file, for ``expires_in`` seconds when its owner asked for less than the
        deployment's ``retention_days``. A file made from a batch has an id of its own that
        replicas agree on: two that make it at once keep the first (ON CONFLICT DO NOTHING)."""
        now = self._clock()
        kept = self.settings.retention_days * 86400
        expires = now + (kept if expires_in is None else min(kept, expires_in))
        sealed = self.sealer.seal(_as_text(purpose, content), file_id)
        await self.db.execute(
            f"INSERT INTO files ({_FILE}, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (file_id) DO NOTHING",
            (file_id, owner, purpose, filename, len(content), now, expires, batch_id, sealed),
        )
        return StoredFile(file_id, owner, purpose, filename, len(content), now, expires, batch_id)

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
    ) -> list[StoredFile]:
        """The owner's files by creation, ``limit`` of them past the file ``after``."""
        where = "owner = ? AND expires_at > ?"
        params: list[Any] = [owner, self._clock()]
        if purpose is not None:
            where += " AND purpose = ?"
            params.append(purpose)
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
