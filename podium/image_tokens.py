"""What an image costs in input tokens, as each vendor documents it.

An image's size is read from its file's header (PNG, JPEG, GIF, WebP), decoding only the few
bytes that hold it: no imaging library, and a 5 MB image costs what a small one does. The rule
that turns a size into tokens belongs to the upstream: Anthropic's counts pixels, OpenAI's
GPT-4o family counts 512-pixel tiles and its newer models 32-pixel patches, Gemini counts
768-pixel tiles. A worker's rule is its ``image_tokens`` setting, else the one its provider
reports (podium/upstream_profile.py), else :data:`CLAUDE`'s.

An image whose size cannot be known (given by URL, which the upstream fetches, or not a
format read here) counts as :data:`UNKNOWN_SIZE`, except where a lower bound is wanted (the
context-window fit), which counts it as nothing.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True, slots=True)
class ImageSize:
    width: int
    height: int


# What an image of unknown size is counted as: a common size for a photo or a screenshot
# scaled for a model, and about what each vendor's rule charges its largest images.
UNKNOWN_SIZE = ImageSize(1024, 1024)


class ImageRule(Protocol):
    def tokens(self, size: ImageSize, detail: str | None) -> int:
        """The input tokens of one image of ``size``; ``detail`` is OpenAI's
        ``low``/``high``/``auto``, None when the caller said nothing."""
        ...


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AreaRule(_Rule):
    """Anthropic's: the image is scaled down until its long edge is at most ``long_edge``,
    then costs its pixels over ``pixels_per_token``, at most ``most`` (its resize ceiling)."""

    kind: Literal["area"] = "area"
    pixels_per_token: float = Field(750.0, gt=0)
    long_edge: int = Field(1568, gt=0)
    most: int = Field(1600, gt=0)

    def tokens(self, size: ImageSize, detail: str | None) -> int:
        width, height = _within(size, self.long_edge)
        return min(self.most, math.ceil(width * height / self.pixels_per_token))


class TileRule(_Rule):
    """OpenAI's GPT-4o family and Gemini's: the image is scaled to fit a ``fit`` square, then
    its short side down to ``short_side``; it costs ``base`` plus ``per_tile`` for each
    ``tile``-pixel square that covers it. ``detail: low`` costs ``low`` whatever the size."""

    kind: Literal["tiles"] = "tiles"
    tile: int = Field(512, gt=0)
    per_tile: int = Field(170, ge=0)
    base: int = Field(85, ge=0)
    fit: int | None = Field(2048, gt=0)
    short_side: int | None = Field(768, gt=0)
    low: int | None = Field(85, ge=0)  # None: the upstream takes no ``detail``

    def tokens(self, size: ImageSize, detail: str | None) -> int:
        if detail == "low" and self.low is not None:
            return self.low
        width, height = float(size.width), float(size.height)
        if self.fit is not None and max(width, height) > self.fit:
            scale = self.fit / max(width, height)
            width, height = width * scale, height * scale
        if self.short_side is not None and min(width, height) > self.short_side:
            scale = self.short_side / min(width, height)
            width, height = width * scale, height * scale
        tiles = math.ceil(width / self.tile) * math.ceil(height / self.tile)
        return self.base + self.per_tile * max(1, tiles)


class PatchRule(_Rule):
    """OpenAI's GPT-4.1 and o4-mini: one token per ``patch``-pixel square that covers the
    image, times ``multiplier``; an image of more than ``most`` patches is scaled down to
    about that many."""

    kind: Literal["patches"] = "patches"
    patch: int = Field(32, gt=0)
    most: int = Field(1536, gt=0)
    multiplier: float = Field(1.0, gt=0)

    def tokens(self, size: ImageSize, detail: str | None) -> int:
        patch = self.patch
        patches = math.ceil(size.width / patch) * math.ceil(size.height / patch)
        if patches > self.most:
            # OpenAI's procedure: shrink to about ``most`` patches, then until the width is a
            # whole number of patches.
            shrink = math.sqrt(self.most * patch * patch / (size.width * size.height))
            width, height = int(size.width * shrink), int(size.height * shrink)
            across = width / patch
            whole = math.floor(across) / across if across >= 1 else 1.0
            scaled_width, scaled_height = width * whole, height * whole
            patches = math.ceil(scaled_width / patch) * math.ceil(scaled_height / patch)
            patches = min(self.most, patches)
        return math.ceil(patches * self.multiplier)


class FlatRule(_Rule):
    """Every image costs the same: a model that resizes each image to one size."""

    kind: Literal["flat"] = "flat"
    each: int = Field(ge=0)

    def tokens(self, size: ImageSize, detail: str | None) -> int:
        return self.each


ImageTokens: TypeAlias = Annotated[
    AreaRule | TileRule | PatchRule | FlatRule, Field(discriminator="kind")
]

CLAUDE = AreaRule()
GPT_4O = TileRule()
GEMINI = TileRule(tile=768, per_tile=258, base=0, fit=None, short_side=None, low=None)
# The rules a worker's ``image_tokens`` may name instead of spelling one out (OpenAI's
# published figures for each family; GPT-4o's is the one its other chat models use).
PRESETS: dict[str, AreaRule | TileRule | PatchRule | FlatRule] = {
    "claude": CLAUDE,
    "gpt-4o": GPT_4O,
    "gpt-4o-mini": TileRule(per_tile=5667, base=2833, low=2833),
    "gpt-4.1": PatchRule(),
    "gpt-4.1-mini": PatchRule(multiplier=1.62),
    "gpt-4.1-nano": PatchRule(multiplier=2.46),
    "o4-mini": PatchRule(multiplier=1.72),
    "gemini": GEMINI,
}


@dataclass(frozen=True, slots=True)
class SeenImage:
    """An image of a request as the estimates and limits see it."""

    size: ImageSize | None  # None: not known (a URL, or a format not read)
    detail: str | None = None
    bytes: int | None = None  # its file's size; None: not known (a URL)

    def tokens(self, rule: ImageRule, *, known_only: bool = False) -> int:
        size = self.size
        if size is None:
            if known_only:
                return 0
            size = UNKNOWN_SIZE
        return rule.tokens(size, self.detail)


def seen(data: str | None, detail: str | None = None) -> SeenImage:
    """The base64 image ``data`` (a ``data:`` URL too; None: given by URL) as it is seen."""
    if not data:
        return SeenImage(None, detail)
    return SeenImage(image_size(data), detail, base64_bytes(data))


def base64_bytes(data: str) -> int:
    """The size of the file the base64 ``data`` (or a ``data:`` URL's payload) decodes to."""
    begin, end = _payload(data)
    while end > begin and data[end - 1] == "=":
        end -= 1
    return (end - begin) * 3 // 4


def _payload(data: str) -> tuple[int, int]:
    """Where the base64 payload of ``data`` (bare, or a ``data:`` URL's) lies, without the
    whitespace around it: indices, so a large payload is never copied."""
    begin, end = 0, len(data)
    if data.startswith("data:"):
        begin = data.find(",") + 1 or end
    while begin < end and data[begin].isspace():
        begin += 1
    while end > begin and data[end - 1].isspace():
        end -= 1
    return begin, end


def preset_for_model(model: str, default: ImageRule) -> ImageRule:
    """The preset whose name is the longest prefix of ``model`` (``gpt-4.1-mini-2025-04-14``
    is ``gpt-4.1-mini``'s), else ``default``."""
    best = ""
    for name in PRESETS:
        if model.startswith(name) and len(name) > len(best):
            best = name
    return PRESETS[best] if best else default


def _within(size: ImageSize, long_edge: int) -> tuple[float, float]:
    longest = max(size.width, size.height)
    if longest <= long_edge:
        return float(size.width), float(size.height)
    scale = long_edge / longest
    return size.width * scale, size.height * scale


# -- reading a size from a file's header ------------------------------------------------------

_MOST_JPEG_SEGMENTS = 512  # a real file reaches its frame header within a few dozen
_HEADER = 32  # every format but JPEG says its size within its first 30 bytes


class _Base64Bytes:
    """Bytes of the base64 payload ``data[begin:end]``, decoded only where asked for (and
    never copied whole: a ``data:`` URL's payload is read where it lies)."""

    def __init__(self, data: str, begin: int, end: int) -> None:
        self._data = data
        self._begin = begin
        self._end = end

    def __len__(self) -> int:
        return (self._end - self._begin) * 3 // 4

    def read(self, start: int, length: int) -> bytes:
        first, last = start // 3, -(-(start + length) // 3)
        begin = self._begin
        chunk = self._data[begin + first * 4 : min(self._end, begin + last * 4)]
        decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        offset = start - first * 3
        return decoded[offset : offset + length]


def image_size(data: str) -> ImageSize | None:
    """The size of the base64 image ``data`` (a ``data:`` URL's payload too), or None for one
    whose format is not read here or whose header is cut short or malformed."""
    begin, end = _payload(data)
    if begin == end:
        return None
    source = _Base64Bytes(data, begin, end)
    try:
        head = source.read(0, _HEADER)
        size = _png(head) or _gif(head) or _webp(head) or _jpeg(source, head)
    except (binascii.Error, ValueError):
        return None
    if size is None or size.width <= 0 or size.height <= 0:
        return None
    return size


def _png(head: bytes) -> ImageSize | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 24:
        return None
    return ImageSize(int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))


def _gif(head: bytes) -> ImageSize | None:
    if head[:6] not in (b"GIF87a", b"GIF89a") or len(head) < 10:
        return None
    return ImageSize(int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"))


def _webp(head: bytes) -> ImageSize | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame's start code
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        height = int.from_bytes(head[28:30], "little") & 0x3FFF
        return ImageSize(width, height)
    if chunk == b"VP8L":  # lossless: two 14-bit sizes, less one, after a signature byte
        bits = int.from_bytes(head[21:25], "little")
        return ImageSize((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: two 24-bit sizes, less one
        width = int.from_bytes(head[24:27], "little") + 1
        return ImageSize(width, int.from_bytes(head[27:30], "little") + 1)
    return None


# Start-of-frame markers carry the size; the others in C0-CF are tables (C4, CC) or reserved.
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(source: _Base64Bytes, head: bytes) -> ImageSize | None:
    """Walks the segments to the frame header: metadata (EXIF, colour profiles) comes first
    and may be long, and only each segment's four-byte header is decoded."""
    if head[:2] != b"\xff\xd8":
        return None
    position, end = 2, len(source)
    for _ in range(_MOST_JPEG_SEGMENTS):
        if position + 4 > end:
            return None
        marker = source.read(position, 4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if kind == 0x01 or 0xD0 <= kind <= 0xD7:  # markers without a length
            position += 2
            continue
        if kind in _FRAMES:
            frame = source.read(position + 5, 4)
            if len(frame) < 4:
                return None
            return ImageSize(int.from_bytes(frame[2:4], "big"), int.from_bytes(frame[0:2], "big"))
        if kind in (0xD9, 0xDA):  # end of image, or the scan began without a frame
            return None
        position += 2 + int.from_bytes(marker[2:4], "big")
    return None
