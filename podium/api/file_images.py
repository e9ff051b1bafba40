"""Images named by the id of a file their caller uploaded (``input_image.file_id`` in the
Responses API, after ``client.files.create(purpose="vision")``): read from the caller's files
once the caller is known, and sent to the worker inline, as a data: URL would have been.

A file is its owner's alone: another caller's id is "no such file", as at OpenAI. A file that is
not a PNG, JPEG, GIF or WebP image is refused, naming it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from podium.api.responses_request import ResponsesRequest
from podium.batches.files import FileStore
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.hooks import Hook
from podium.types import ChatRequest, ImagePart

# The leading bytes of each image format a worker reads, and its media type.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(content: bytes) -> str | None:
    """The media type of an image file, from its first bytes; None when it is none of PNG,
    JPEG, GIF or WebP."""
    for signature, media_type in _SIGNATURES:
        if content.startswith(signature):
            return media_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


class FileImages(Hook):
    def __init__(self, files: Callable[[], FileStore | None]) -> None:
        self.files = files  # None: this gateway keeps no files (batches are off)

    async def transform_request(self, request: ChatRequest, context: RequestContext) -> ChatRequest:
        # Only the Responses API names images by file, in this turn or an earlier one it
        # continues (a stored conversation keeps the id, as its client sent it).
        if type(request) is not ResponsesRequest:
            return request
        read: dict[str, tuple[str, str]] = {}  # file id -> (base64, media type): read once
        for message in request.messages:
            for part in message.content:
                if type(part) is ImagePart and part.file_id is not None:
                    if part.file_id not in read:
                        read[part.file_id] = await self._read(part.file_id, context.caller.owner)
                    part.data, part.media_type = read[part.file_id]
                    part.file_id = None
        return request

    async def _read(self, file_id: str, owner: str) -> tuple[str, str]:
        """The image ``file_id`` names, as base64 and its media type."""
        files = self.files()
        if files is None:
            raise PodiumError(
                "invalid_request",
                f"input_image.file_id {file_id[:128]!r}: this gateway keeps no files "
                "(batches.enabled is off); give the image by 'image_url'.",
                param="file_id",
            )
        content = await files.content(owner, file_id)
        if content is None:
            raise PodiumError(
                "not_found",
                f"No such File object: {file_id[:128]} (input_image.file_id)",
                param="file_id",
            )
        media_type = image_type(content)
        if media_type is None:
            raise PodiumError(
                "invalid_request",
                f"input_image.file_id {file_id[:128]!r} is not a PNG, JPEG, GIF or WebP image.",
                param="file_id",
            )
        return base64.b64encode(content).decode("ascii"), media_type
