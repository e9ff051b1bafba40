"""Anthropic's Files API (``client.files``, and ``client.beta.files``): upload a file
(``POST /v1/files``), list (``GET /v1/files``), read the metadata of one, delete it, and
download the files that may be downloaded. It answers on the paths of OpenAI's Files API when
the request says ``anthropic-version`` (podium/api/files.py chooses).

Files are kept in the one store both APIs share (podium/batches/files.py): an upload here is
the caller's file there too (``purpose: user_data``), and the caller's files from there (a
batch's input, images, a batch's output and error files) are listed here. A file is its
owner's alone: another caller hears 404, as for a file that does not exist.

As at Anthropic, a file someone uploaded cannot be downloaded (``downloadable: false``; 400
with ``error_code: file_not_downloadable``): only files Podium made are (a batch's output and
error files, where Anthropic's are the files its tools make). The API began as a beta
(``anthropic-beta: files-api-2025-04-14``, ``client.beta.files``) and is now Anthropic's own
(``client.files``, which sends no beta header): requests are answered with or without it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
import unicodedata
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from podium.api.anthropic import AnthropicIngress, error_body, error_status
from podium.api.anthropic_request import check_version
from podium.api.http import AnyResponse, Handler, Request, Response, retry_headers
from podium.api.multipart import FormPart, form_parts, lifetime_field
from podium.batches.files import SIGNED_TYPES, FileStore, StoredFile, is_text, signed_type
from podium.errors import PodiumError
from podium.types import JSONObject

if TYPE_CHECKING:
    from podium.app import Podium

log = logging.getLogger("podium.files")

MAX_FILE_BYTES = 500 * 2**20  # Anthropic's 500 MB; batches.max_body_bytes applies first
EXPIRY_SECONDS = (3600, 7_776_000)  # expires_in_seconds: an hour to ninety days, as Anthropic
PAGE_LIMIT = (1, 1000, 20)  # lowest, highest, default
MAX_IDS = 100  # ``ids`` lists at most this many
MAX_FILENAME = 255
# Refused in a file name, as Anthropic refuses them: besides control characters (below).
FORBIDDEN = frozenset('<>:"|?*')
FILE_ID = re.compile(r"^file[-_][A-Za-z0-9_-]{1,250}$")
# A media type as a client may declare it: type/subtype, in the characters RFC 6838 allows.
MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
EXTENSIONS = {
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "text/plain": ".txt",
}
# The error codes Anthropic gives in ``error.details.error_code`` that this API raises.
DETAILED = frozenset({"file_not_downloadable"})


class FileErrors(AnthropicIngress):
    """Anthropic's error object, with ``details.error_code`` where Anthropic gives one (its SDK
    raises a subclass by it: ``FileNotDownloadableError``)."""

    def render_error(self, error: PodiumError) -> Response:
        body = error_body(error)
        if error.code in DETAILED:
            body["error"]["details"] = {"error_code": error.code}
        return Response.json(body, error_status(error), retry_headers(error))


ERRORS = FileErrors()


def answered(handler: Handler) -> Handler:
    """``handler`` with its errors in Anthropic's format (including one Podium did not expect:
    the route's own renderer is OpenAI's) and every answer carrying a ``request-id``, as
    Anthropic's do."""

    async def handle(http: Request) -> AnyResponse:
        try:
            response = await handler(http)
        except PodiumError as error:
            response = ERRORS.render_error(error)
        except Exception:
            log.exception("unhandled error on %s %s", http.method, http.path)
            response = ERRORS.render_error(
                PodiumError("api_error", "Podium failed to handle the request; see its log")
            )
        response.headers["request-id"] = f"req_{uuid.uuid4().hex}"
        return response

    return handle


def rfc3339(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def metadata(stored: StoredFile) -> JSONObject:
    """A file as Anthropic describes it. Podium deletes every file in the end
    (``batches.retention_days``), so ``expires_at`` is always a time."""
    return {
        "type": "file",
        "id": stored.file_id,
        "filename": stored.filename,
        "mime_type": stored.mime_type,
        "size_bytes": stored.bytes,
        "created_at": rfc3339(stored.created_at),
        "expires_at": rfc3339(stored.expires_at),
        # Made by Podium (a batch's results), not uploaded: Anthropic's tool-made files.
        "downloadable": stored.batch_id is not None,
    }


def mime_type_of(declared: str | None, content: bytes) -> str:
    """What an upload is. The bytes decide for the formats with a signature (PDF, PNG, JPEG,
    GIF, WebP): a part declared one of those that is not one is what its bytes are. Otherwise
    the part's own Content-Type, when it is a well-formed type other than the generic
    ``application/octet-stream``; otherwise ``text/plain`` for UTF-8 text, else
    ``application/octet-stream``."""
    signed = signed_type(content)
    if signed is not None:
        return signed
    if declared is not None:
        media_type = declared.split(";", 1)[0].strip().lower()
        if (
            MEDIA_TYPE.match(media_type)
            and media_type != "application/octet-stream"
            and media_type not in SIGNED_TYPES
        ):
            return media_type
    return "text/plain" if is_text(content) else "application/octet-stream"


def _unsafe(character: str) -> bool:
    # Control characters (C0, DEL, C1) and format characters such as the bidirectional
    # overrides, which make a name read as another in a listing.
    return character in FORBIDDEN or unicodedata.category(character) in ("Cc", "Cf")


def filename_of(given: str | None, mime_type: str) -> str:
    """The name a file is kept under: only the last part of the path it was given (so
    ``../../etc/passwd`` is ``passwd``), or ``unnamed`` with the extension of its type when
    there is none. A name with a control character or one of ``< > : " | ? *``, or longer than
    255 characters, is refused."""
    name = re.split(r"[/\\]", given or "")[-1]
    if not name.strip() or name in (".", ".."):
        return "unnamed" + EXTENSIONS.get(mime_type, "")
    bad = sorted({character for character in name if _unsafe(character)})
    if bad:
        shown = ", ".join(repr(character) for character in bad[:5])
        raise PodiumError(
            "invalid_request",
            f"file: the file name holds characters a file name may not ({shown}): control "
            'characters and < > : " | ? * are refused',
            param="file",
        )
    if len(name) > MAX_FILENAME:
        raise PodiumError(
            "invalid_request",
            f"file: the file name is {len(name)} characters long; at most {MAX_FILENAME}",
            param="file",
        )
    return name


def expiry_of(parts: list[FormPart]) -> int | None:
    """``expires_in_seconds``, a form field: seconds from upload until the file goes."""
    given = [part for part in parts if part.name == "expires_in_seconds"]
    if not given:
        return None
    return lifetime_field(
        given[-1].content, EXPIRY_SECONDS, name="expires_in_seconds", param="expires_in_seconds"
    )


def upload_of(parts: list[FormPart]) -> FormPart:
    uploads = [part for part in parts if part.name == "file"]
    if not uploads:
        raise PodiumError(
            "invalid_request", "file: Field required (the multipart part 'file')", param="file"
        )
    if len(uploads) > 1:
        raise PodiumError(
            "invalid_request", "file: give one file per upload, not several", param="file"
        )
    upload = uploads[0]
    if not upload.content:
        raise PodiumError("invalid_request", "file: the file is empty", param="file")
    if len(upload.content) > MAX_FILE_BYTES:
        raise PodiumError(
            "request_too_large",
            f"file: {len(upload.content)} bytes; a file is at most {MAX_FILE_BYTES} bytes",
        )
    return upload


# -- listing ----------------------------------------------------------------------------------


def cursor_page(direction: str, file_id: str) -> str:
    """An opaque ``next_page`` cursor (as the SDK pages by): which way, past which file."""
    raw = f"{direction}:{file_id}".encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def read_cursor(page: str) -> tuple[str, str]:
    """The direction and file of a ``page`` cursor :func:`cursor_page` made."""
    refused = PodiumError(
        "invalid_request", "page: not a page cursor this API gave (next_page)", param="page"
    )
    if not page.startswith("page_") or len(page) > 400:
        raise refused
    encoded = page.removeprefix("page_")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise refused from None
    direction, _, file_id = raw.partition(":")
    if direction not in ("after", "before") or not FILE_ID.match(file_id):
        raise refused
    return direction, file_id


class Listing:
    """``GET /v1/files``'s query: ``limit``, and where the page starts (``after_id``,
    ``before_id`` or the ``page`` cursor), or ``ids``."""

    def __init__(self, query_string: bytes) -> None:
        pairs = parse_qsl(query_string.decode("latin-1"))
        query = dict(pairs)
        self.ids = list(dict.fromkeys(value for name, value in pairs if name in ("ids", "ids[]")))
        self.scope_id = query.get("scope_id")
        raw = query.get("limit")
        low, high, default = PAGE_LIMIT
        self.limit = default if raw is None else int(raw) if raw.strip().isdigit() else 0
        if not low <= self.limit <= high:
            raise PodiumError(
                "invalid_request",
                f"limit: give a whole number from {low} to {high}",
                param="limit",
            )
        starts = {name: query[name] for name in ("after_id", "before_id", "page") if name in query}
        if len(starts) > 1:
            raise PodiumError(
                "invalid_request",
                f"give one of after_id, before_id and page, not {' and '.join(sorted(starts))}",
            )
        if self.ids and (starts or raw is not None):
            raise PodiumError(
                "invalid_request", "ids: give ids alone, without page, limit, after_id or before_id"
            )
        if len(self.ids) > MAX_IDS:
            raise PodiumError(
                "invalid_request", f"ids: at most {MAX_IDS} ids, not {len(self.ids)}", param="ids"
            )
        self.direction, self.start, self.named = "after", None, ""
        for name, value in starts.items():
            self.named = name
            if name == "page":
                self.direction, self.start = read_cursor(value)
            elif not FILE_ID.match(value):
                raise PodiumError(
                    "invalid_request", f"{name}: {value[:128]!r} is not a file id", param=name
                )
            else:
                self.direction, self.start = name.removesuffix("_id"), value


async def page_of(files: FileStore, owner: str, listing: Listing) -> JSONObject:
    """One page of the owner's files, newest first, in the shape of Anthropic's list (the beta
    API's ``first_id``, ``last_id``, ``has_more``), with the ``next_page`` cursor the current
    SDKs page by."""
    if listing.scope_id is not None:
        return _page([], more=False)  # a scope is an Anthropic session: no file here has one
    if listing.ids:
        return _page(await files.page(owner, MAX_IDS, ids=listing.ids), more=False)
    if listing.start is not None and await files.get(owner, listing.start) is None:
        raise PodiumError(
            "invalid_request",
            f"{listing.named}: no file {listing.start[:128]!r} of yours to page from",
            param=listing.named,
        )
    before = listing.direction == "before"
    # Before a file: the newer ones, nearest it first (reversed below, to read newest first).
    found = await files.page(owner, listing.limit + 1, after=listing.start, ascending=before)
    more = len(found) > listing.limit
    found = found[: listing.limit]
    if before:
        found.reverse()
    following = None
    if more and found:
        last = found[0] if before else found[-1]
        following = cursor_page(listing.direction, last.file_id)
    return _page(found, more=more, following=following)


def _page(found: list[StoredFile], *, more: bool, following: str | None = None) -> JSONObject:
    return {
        "data": [metadata(stored) for stored in found],
        "first_id": found[0].file_id if found else None,
        "last_id": found[-1].file_id if found else None,
        "has_more": more,
        "next_page": following,
    }


# -- the routes -------------------------------------------------------------------------------


def file_handlers(podium: Podium, files: FileStore) -> dict[tuple[str, str], Handler]:
    """The handlers of the /v1/files routes by method and path, in Anthropic's format; an
    upload's body is at most ``batches.max_body_bytes``, its file at most 500 MiB."""
    gateway = podium.gateway
    limit = podium.config.batches.max_body_bytes

    async def owner_of(http: Request) -> str:
        """Who is calling (their 401 first, as on /v1/messages), once the request is one this
        API answers: a valid ``anthropic-version``."""
        caller = await gateway.caller(ERRORS.name, http.headers)
        check_version(http.headers)
        return caller.owner

    async def found(http: Request) -> tuple[str, StoredFile]:
        owner = await owner_of(http)
        file_id = http.params["file_id"]
        stored = await files.get(owner, file_id)
        if stored is None:
            raise PodiumError("not_found", f"File not found: {file_id[:128]!r}")
        return owner, stored

    async def upload(http: Request) -> Response:
        owner = await owner_of(http)
        body = await http.body(limit)
        parts = form_parts(http.headers.get("content-type", ""), body, "a part named 'file'")
        part = upload_of(parts)
        expires_in = expiry_of(parts)
        mime_type = mime_type_of(part.content_type, part.content)
        stored = await files.create(
            f"file_{uuid.uuid4().hex}",
            owner,
            "user_data",  # OpenAI's purpose for a file a model reads: as its API lists it
            filename_of(part.filename, mime_type),
            part.content,
            expires_in=expires_in,
            mime_type=mime_type,
        )
        return Response.json(metadata(stored))

    async def listing(http: Request) -> Response:
        owner = await owner_of(http)
        return Response.json(await page_of(files, owner, Listing(http.query_string)))

    async def retrieve(http: Request) -> Response:
        _, stored = await found(http)
        return Response.json(metadata(stored))

    async def content(http: Request) -> Response:
        owner, stored = await found(http)
        if stored.batch_id is None:
            raise PodiumError(
                "invalid_request",
                f"File {stored.file_id!r} cannot be downloaded: only files Podium made (a "
                "batch's output and error files) can be, not uploaded ones "
                "(downloadable: false).",
                code="file_not_downloadable",
            )
        raw = await files.content(owner, stored.file_id)
        if raw is None:  # deleted between the two reads
            raise PodiumError("not_found", f"File not found: {stored.file_id!r}")
        return Response(raw, 200, {}, stored.mime_type)

    async def delete(http: Request) -> Response:
        owner, stored = await found(http)
        await files.delete(owner, stored.file_id)
        return Response.json({"id": stored.file_id, "type": "file_deleted"})

    handlers: dict[tuple[str, str], Handler] = {
        ("POST", "/v1/files"): upload,
        ("GET", "/v1/files"): listing,
        ("GET", "/v1/files/{file_id}"): retrieve,
        ("DELETE", "/v1/files/{file_id}"): delete,
        ("GET", "/v1/files/{file_id}/content"): content,
    }
    return {route: answered(handler) for route, handler in handlers.items()}
