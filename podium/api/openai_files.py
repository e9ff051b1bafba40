"""OpenAI's Files API (``client.files``), for what Podium reads files for: upload a batch's JSON
lines (``purpose: batch``) or an image a Responses request names by ``file_id`` (``vision``,
``user_data``), list, read, read back and delete files; a batch's output and error files are
read here too. A file is its owner's alone: another caller hears 404, as for a file that
does not exist. ``expires_after`` keeps a file for less than ``batches.retention_days``.

The same paths answer Anthropic's Files API for a request that says ``anthropic-version``
(podium/api/files.py chooses): a file uploaded there is the caller's here too, listed with
``purpose: user_data``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from podium.api.http import Handler, Request, Response, list_page
from podium.api.multipart import form_parts, lifetime_field
from podium.api.openai import OpenAIIngress, Wire
from podium.batches.files import FileStore, StoredFile, image_type
from podium.errors import PodiumError
from podium.types import JSONObject

if TYPE_CHECKING:
    from podium.app import Podium

# What may be uploaded: a batch's requests, and images a Responses request names by file_id
# (OpenAI's "vision"; "user_data" is its purpose for any file a model reads).
PURPOSES = ("batch", "vision", "user_data")
EXPIRY_SECONDS = (3600, 2_592_000)  # what OpenAI allows: an hour to 30 days
ERRORS = OpenAIIngress()


class ExpiresAfter(Wire):
    """When a file expires: ``seconds`` after it was made (the only anchor OpenAI has)."""

    anchor: Literal["created_at"]
    seconds: int = Field(ge=EXPIRY_SECONDS[0], le=EXPIRY_SECONDS[1])


def expiry_of(fields: dict[str, tuple[str | None, bytes]]) -> int | None:
    """An upload's ``expires_after``, sent as the form fields ``expires_after[anchor]`` and
    ``expires_after[seconds]`` (as the SDKs and curl's ``-F`` send it): its seconds."""
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor is None or anchor[1].decode("utf-8", "replace").strip() != "created_at":
        raise PodiumError(
            "invalid_request",
            "expires_after[anchor]: give 'created_at', the only anchor there is",
            param="expires_after.anchor",
        )
    raw = b"" if seconds is None else seconds[1]
    return lifetime_field(
        raw, EXPIRY_SECONDS, name="expires_after[seconds]", param="expires_after.seconds"
    )


def file_object(stored: StoredFile) -> JSONObject:
    return {
        "id": stored.file_id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": int(stored.created_at),
        "expires_at": int(stored.expires_at),
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "status_details": None,
    }


def check_content(purpose: str, content: bytes) -> None:
    """A batch's file is UTF-8 JSON lines (each line checked when a batch is made of it); a
    vision file is an image a worker can read; user_data may be anything."""
    if purpose == "batch":
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise PodiumError(
                "invalid_request",
                "file: a batch's file is JSON lines, in UTF-8; this file is not UTF-8 text",
                param="file",
            ) from None
    elif purpose == "vision" and image_type(content) is None:
        raise PodiumError(
            "invalid_request",
            "file: a 'vision' file is an image, PNG, JPEG, GIF or WebP; this one is none of them",
            param="file",
        )


def form_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body's fields: name -> (file name, content); the last of a name."""
    parts = form_parts(content_type, body, "the fields 'file' and 'purpose'")
    return {part.name: (part.filename, part.content) for part in parts}


def file_handlers(podium: Podium, files: FileStore) -> dict[tuple[str, str], Handler]:
    """The handlers of the /v1/files routes by method and path (podium/api/files.py routes
    them); an upload is at most ``batches.max_body_bytes``. Their errors are OpenAI's:
    :data:`ERRORS` renders them."""
    errors = ERRORS
    gateway = podium.gateway
    limit = podium.config.batches.max_body_bytes

    async def owner_of(http: Request) -> str:
        return (await gateway.caller(errors.name, http.headers)).owner

    async def found(http: Request) -> tuple[str, StoredFile]:
        owner = await owner_of(http)
        file_id = http.params["file_id"]
        stored = await files.get(owner, file_id)
        if stored is None:
            raise PodiumError("not_found", f"No such File object: {file_id[:128]}", param="id")
        return owner, stored

    async def upload(http: Request) -> Response:
        caller = await gateway.caller(errors.name, http.headers)
        body = await http.body(limit)
        fields = form_fields(http.headers.get("content-type", ""), body)
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
        if purpose not in PURPOSES:
            raise PodiumError(
                "invalid_request",
                f"purpose: {purpose or 'nothing'!r} is not accepted here; Podium keeps files "
                "for batches ('batch') and images requests name ('vision', 'user_data')",
                param="purpose",
            )
        if "file" not in fields:
            raise PodiumError("invalid_request", "file: give the file to upload", param="file")
        filename, content = fields["file"]
        check_content(purpose, content)
        expires_in = expiry_of(fields)
        file_id = f"file-{uuid.uuid4().hex}"
        stored = await files.create(
            file_id,
            caller.owner,
            purpose,
            (filename or "upload.jsonl")[:256],
            content,
            expires_in=expires_in,
        )
        return Response.json(file_object(stored))

    async def listing(http: Request) -> Response:
        owner = await owner_of(http)
        query = http.query
        raw = query.get("limit", "10000")
        limit_of_page = int(raw) if raw.isdigit() else 0
        if not 1 <= limit_of_page <= 10000:
            raise PodiumError(
                "invalid_request", "limit: give a whole number from 1 to 10000", param="limit"
            )
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise PodiumError("invalid_request", "order: give 'asc' or 'desc'", param="order")
        page = await files.page(
            owner,
            limit_of_page + 1,
            after=query.get("after"),
            ascending=order == "asc",
            purpose=query.get("purpose"),
        )
        data = [file_object(stored) for stored in page[:limit_of_page]]
        return Response.json({"object": "list", **list_page(data, len(page) > limit_of_page)})

    async def retrieve(http: Request) -> Response:
        _, stored = await found(http)
        return Response.json(file_object(stored))

    async def content(http: Request) -> Response:
        owner, stored = await found(http)
        raw = await files.content(owner, stored.file_id)
        if raw is None:  # deleted between the two reads
            raise PodiumError("not_found", f"No such File object: {stored.file_id}", param="id")
        return Response(raw, 200, {}, "application/octet-stream")

    async def delete(http: Request) -> Response:
        owner, stored = await found(http)
        deleted = await files.delete(owner, stored.file_id)
        return Response.json({"id": stored.file_id, "object": "file", "deleted": deleted})

    return {
        ("POST", "/v1/files"): upload,
        ("GET", "/v1/files"): listing,
        ("GET", "/v1/files/{file_id}"): retrieve,
        ("DELETE", "/v1/files/{file_id}"): delete,
        ("GET", "/v1/files/{file_id}/content"): content,
    }
