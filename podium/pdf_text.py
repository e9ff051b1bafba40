"""A PDF's text, read in a process of its own: a caller's PDF is hostile input, and a parser
given one can loop, or ask for gigabytes, for as long as it runs.

``python -m podium.pdf_text MAX_PAGES CPU_SECONDS MEMORY_BYTES SCAN_PAGES SCAN_DPI`` starts,
imports pypdf (and pypdfium2, where installed, to draw the pages of a scan) and
bounds itself (address space, open files, no core dumps; then, where the kernel offers it,
seccomp: no sockets, no new processes or programs: podium/confinement.py), then waits for
one PDF on stdin. It reads its text under a CPU-time limit, writes one JSON object to stdout
(``{"text": str | null, "pages": int}``, with ``"images"``, the first SCAN_PAGES pages as PNG,
for a PDF with no text; or ``{"unreadable": reason}``) and exits. A process reads one PDF
only: nothing one document does to the parser's state reaches the next.

This module imports the standard library, pypdf and, to draw scans, numpy and pypdfium2 (and
podium.confinement, which is standard library only), so a reader starts in a fraction of a
second and can be started before a PDF arrives (podium/documents.py keeps one waiting).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import zlib
from typing import Any

MAX_PIXELS = 2550 * 3300  # a US Letter page at 300 dpi


class UnreadableDocument(ValueError):
    """The bytes are not a PDF any worker could read; the message says why."""


def read_pdf(content: bytes, *, max_pages: int) -> tuple[str | None, int]:
    """A PDF's text layer (None when it has none: a scan) and its page count."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument("it is encrypted with a password")
        pages = len(reader.pages)
        if pages > max_pages:
            raise UnreadableDocument(f"it has {pages} pages; at most {max_pages} are read")
        texts = [page.extract_text().strip() for page in reader.pages]
    except UnreadableDocument:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise UnreadableDocument(f"it is not a readable PDF ({type(error).__name__})") from None
    text = "\n\n".join(page for page in texts if page)
    return (text or None), pages


def png(pixels: Any) -> bytes:
    """A grey image (a height x width array of bytes) as a PNG file."""
    import numpy as np

    height, width = pixels.shape
    rows = np.concatenate(  # each row after its filter byte (0: none)
        [np.zeros((height, 1), dtype=np.uint8), pixels.reshape(height, width)], axis=1
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def page_images(content: bytes, *, pages: int, dpi: int) -> list[str]:
    """The first ``pages`` pages as PNG images (base64): a PDF with no text layer (a scan) that
    a worker reading images can still see. Needs pypdfium2 (the ``scans`` extra)."""
    import pypdfium2

    document = pypdfium2.PdfDocument(content)
    images: list[str] = []
    try:
        for index in range(min(pages, len(document))):
            page = document[index]
            width, height = page.get_size()  # in points, 72 an inch
            # A page larger than about MAX_PIXELS (a poster, or a crafted page size) is drawn
            # smaller, so no page costs more than a Letter page at 300 dpi.
            scale = min(dpi / 72, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
            # Grey: a third of the bytes, and a scanned page says as much in grey.
            pixels = page.render(scale=scale, grayscale=True).to_numpy()
            images.append(base64.b64encode(png(pixels)).decode("ascii"))
    finally:
        document.close()
    return images


def _bound(memory: int) -> None:  # pragma: no cover - runs in the reader process
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from podium.confinement import restrict_syscalls

    try:
        restrict_syscalls()
    except OSError:
        pass  # a kernel without seccomp: the other limits still hold


def main() -> None:  # pragma: no cover - runs in the reader process (tests drive it as one)
    max_pages, cpu_seconds, memory, scan_pages, scan_dpi = (int(value) for value in sys.argv[1:6])
    import resource

    import pypdf  # noqa: F401  (imported before the PDF comes, so reading starts at once)

    try:  # loaded before the process bounds itself, as pypdf is
        import numpy  # noqa: F401
        import pypdfium2  # noqa: F401
    except ImportError:
        scan_pages = 0  # no renderer here: scans stay unread

    _bound(memory)
    content = sys.stdin.buffer.read()
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu_seconds, spent + cpu_seconds))
    try:
        text, pages = read_pdf(content, max_pages=max_pages)
        answer: dict[str, object] = {"text": text, "pages": pages}
        if text is None and scan_pages > 0:
            try:
                answer["images"] = page_images(content, pages=scan_pages, dpi=scan_dpi)
            except Exception:  # a page the renderer cannot draw: no images, the text as it was
                answer["images"] = []
    except UnreadableDocument as error:
        answer = {"unreadable": str(error)}
    except MemoryError:
        answer = {"unreadable": "reading it needed more memory than a PDF is allowed"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
