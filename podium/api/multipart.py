"""multipart/form-data request bodies (file uploads), read by the standard library's MIME parser
given the request's Content-Type as the message's header."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from podium.errors import PodiumError


@dataclass(frozen=True, slots=True)
class FormPart:
    name: str
    filename: str | None  # as the part's Content-Disposition gives it (None: not a file)
    content_type: str | None  # the part's own Content-Type header, when it has one
    content: bytes


def form_parts(content_type: str, body: bytes, fields: str) -> list[FormPart]:
    """A multipart/form-data body's named parts, in order; ``fields`` says what the body
    should hold, for the error when it is not multipart/form-data."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in (
        content_type.lower()
    ):
        raise PodiumError("invalid_request", f"send the file as multipart/form-data with {fields}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise PodiumError("invalid_request", "the multipart/form-data body could not be read")
    parts: list[FormPart] = []
    for part in message.iter_parts():
        if not isinstance(part, EmailMessage):
            continue
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            declared = part.get("content-type")
            parts.append(
                FormPart(
                    name,
                    part.get_filename(),
                    None if declared is None else str(declared),
                    payload if isinstance(payload, bytes) else b"",
                )
            )
    return parts


def lifetime_field(raw: bytes, bounds: tuple[int, int], *, name: str, param: str) -> int:
    """A form field giving a file's lifetime in whole seconds, within ``bounds`` (an hour up to
    each API's longest, named in days in the error)."""
    low, high = bounds
    raw = raw.strip()
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise PodiumError(
            "invalid_request",
            f"{name}: give a whole number of seconds from {low} (an hour) to {high} "
            f"({high // 86_400} days)",
            param=param,
        )
    return int(raw)
