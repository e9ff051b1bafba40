"""A PDF's text, read in a process of its own: a caller's PDF is hostile input, and a parser
given one can loop, or ask for gigabytes, for as long as it runs.

``python -m podium.pdf_text MAX_PAGES CPU_SECONDS MEMORY_BYTES`` starts, imports pypdf and
bounds itself (address space, open files, no core dumps; then, where the kernel offers it,
seccomp: no sockets, no new processes or programs: podium/confinement.py), then waits for
one PDF on stdin. It reads its text under a CPU-time limit, writes one JSON object to stdout
(``{"text": str | null, "pages": int}`` or ``{"unreadable": reason}``) and exits. A process
reads one PDF only: nothing one document does to the parser's state reaches the next.

This module imports the standard library and pypdf only (and podium.confinement, which is
standard library only), so a reader starts in a fraction of a second and can be started
before a PDF arrives (podium/documents.py keeps one waiting).
"""

from __future__ import annotations

import io
import json
import sys


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
    max_pages, cpu_seconds, memory = (int(value) for value in sys.argv[1:4])
    import resource

    import pypdf  # noqa: F401  (imported before the PDF comes, so reading starts at once)

    _bound(memory)
    content = sys.stdin.buffer.read()
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu_seconds, spent + cpu_seconds))
    try:
        text, pages = read_pdf(content, max_pages=max_pages)
        answer: dict[str, object] = {"text": text, "pages": pages}
    except UnreadableDocument as error:
        answer = {"unreadable": str(error)}
    except MemoryError:
        answer = {"unreadable": "reading it needed more memory than a PDF is allowed"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
