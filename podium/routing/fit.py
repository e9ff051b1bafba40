"""Which workers can take a request at all: the capabilities it needs (``tools`` for tool
definitions, ``vision`` for images, ``documents`` for a PDF with no text to send instead, or
``vision`` when its pages were drawn), an upstream that takes its images (its vendor's
limits on their count, size and sides: podium/upstream_profile.py) and a context window that
holds its prompt: its
documents' text, its images by the worker's image rule (those of a known size), and for a
worker that reads PDFs itself their pages' images too, each page at the worker's
``page_image_tokens`` (``document_page_tokens``, podium/config.py); podium/media.py counts
them. A page's image costs what it costs whatever the page says; unset, the figure is the
smallest a vendor documents, so the count stays a lower bound.

Routers that choose among workers (the learned and workflow routers, and ``podium/auto`` in
the direct router) choose among these. When no worker fits, they keep them all: the upstream
then says exactly what is wrong, and a worker is not ruled out by an estimate alone.

A rule or a semantic route names its worker, so only a certain failure passes it over
(:func:`cannot_take`): images for a worker without ``vision`` (the gateway refuses that
anyway), a PDF without text for one without ``documents``, or a prompt its context window
surely cannot hold. Tools are not checked there: a
rule that sends tool calls to a worker says that the worker takes them, declared or not.
"""

from __future__ import annotations

from collections.abc import Sequence

from podium.config import WorkerConfig
from podium.media import Media, request_media
from podium.types import ChatRequest, DocumentPart

# A prompt is too long for a worker only when it surely is: its characters over this many a
# token (more than any tokenizer here averages on real text: about 4 for English, 3 for code)
# still fill the window.
MOST_CHARS_PER_TOKEN = 6


def fewest_tokens(
    request: ChatRequest, worker: WorkerConfig | None = None, media: Media | None = None
) -> int:
    """A lower bound on the prompt's tokens, from its length (its documents' text included);
    for a ``worker``, what its images of a known size and its PDFs' pages cost it too
    (``media``: the request's, when already read)."""
    length = request.prompt_length()
    if not request.attachments:
        tokens = length // MOST_CHARS_PER_TOKEN
    else:
        tokens = (length + request.documents_length()) // MOST_CHARS_PER_TOKEN
    if worker is None or not (request.attachments or request.has_images()):
        return tokens
    if media is None:
        media = request_media(request)
    return tokens + media.tokens(worker, known_only=True)


def needs(request: ChatRequest) -> frozenset[str]:
    """The capabilities a worker must declare to take this request."""
    needed: set[str] = set()
    if request.tools:
        needed.add("tools")
    if request.has_images():
        needed.add("vision")
    return frozenset(needed)


def unreadable(request: ChatRequest) -> bool:
    """Whether a document of the request has no text a worker could be sent instead."""
    return any(part.text is None for part in request.document_parts())


def reads_documents(request: ChatRequest, worker: WorkerConfig) -> bool:
    """Whether ``worker`` can be sent every document of the request: one that reads PDFs
    takes them as they are (one known only by URL if its upstream fetches URLs); any other,
    their text, or for a scan its pages drawn as images (podium/documents.py) if it reads
    images."""
    capabilities = worker.capabilities
    if "documents" in capabilities:
        return worker.upstream.document_urls or not any(
            by_url_only(part) for part in request.document_parts()
        )
    seeing = "vision" in capabilities
    return all(
        part.text is not None or (seeing and bool(part.page_images))
        for part in request.document_parts()
    )


def by_url_only(part: DocumentPart) -> bool:
    """Whether the document is known only by its URL (Podium fetches nothing)."""
    return part.data is None and part.url is not None


def unread_why(request: ChatRequest, worker: WorkerConfig) -> str:
    """Why ``worker``, which cannot be sent the request's documents, cannot."""
    if "documents" in worker.capabilities:
        return (
            f"worker {worker.name!r} takes PDFs inline only, and a document here is known only "
            "by its URL (its upstream fetches none); send the document's bytes"
        )
    return f"worker {worker.name!r} reads no PDFs, and a document here has no text layer"


def images_refused(
    request: ChatRequest, worker: WorkerConfig, media: Media | None = None
) -> str | None:
    """Why ``worker``'s upstream would refuse the request's images, or None (``media``: the
    request's, when already read)."""
    if media is None:
        if not request.attachments and not request.has_images():
            return None
        media = request_media(request)
    why = media.refusal(worker)
    return None if why is None else f"worker {worker.name!r} {why} (its vendor's limit)"


def fits(request: ChatRequest, worker: WorkerConfig) -> bool:
    if request.attachments and not reads_documents(request, worker):
        return False
    media = request_media(request)  # at once for a request of text alone
    if images_refused(request, worker, media) is not None:
        return False
    return _fits(worker, needs(request), fewest_tokens(request, worker, media))


def able(request: ChatRequest, eligible: Sequence[WorkerConfig]) -> list[WorkerConfig]:
    """The eligible workers that can take the request (perhaps none); of them, those that
    also :func:`serve <serves>` it, when any do."""
    if request.attachments or request.has_images():
        return _able_with_media(request, request_media(request), eligible)
    needed, tokens = needs(request), fewest_tokens(request)
    return [worker for worker in eligible if _fits(worker, needed, tokens)]


def _able_with_media(
    request: ChatRequest, media: Media, eligible: Sequence[WorkerConfig]
) -> list[WorkerConfig]:
    """:func:`able` for a request with images or documents: each costs each worker its own
    tokens, a worker must be able to read the documents, and its upstream must take the
    images (its vendor's limits). When a document asks to be cited, those of them that cite,
    if any do."""
    needed, tokens = needs(request), fewest_tokens(request)
    fit = [
        worker
        for worker in eligible
        if _fits(worker, needed, tokens + media.tokens(worker, known_only=True))
        and reads_documents(request, worker)
        and media.refusal(worker) is None
    ]
    if not request.attachments or not wants_citations(request):
        return fit
    return [worker for worker in fit if "citations" in worker.capabilities] or fit


def wants_citations(request: ChatRequest) -> bool:
    """Whether a document of the request asks to be cited: a worker that cites is chosen
    over one that does not (which still can take it, and answers without citations)."""
    return any(part.citations for part in request.document_parts())


def serves(request: ChatRequest, worker: WorkerConfig) -> bool:
    """Whether ``worker``, which can take the request, also gives what it asks for without
    needing it: citations of its documents."""
    if not request.attachments or "citations" in worker.capabilities:
        return True
    return not wants_citations(request)


def fitting(request: ChatRequest, eligible: Sequence[WorkerConfig]) -> list[WorkerConfig]:
    """The eligible workers that can take the request; all of them if none can."""
    return able(request, eligible) or list(eligible)


def _fits(worker: WorkerConfig, needed: frozenset[str], tokens: int) -> bool:
    return needed <= set(worker.capabilities) and tokens < worker.context_window


def cannot_take(
    request: ChatRequest, worker: WorkerConfig, media: Media | None = None
) -> str | None:
    """Why ``worker`` certainly cannot answer the request, or None (``media``: the request's,
    when already read: a caller judging several workers reads the images once)."""
    if request.has_images() and "vision" not in worker.capabilities:
        return f"worker {worker.name!r} reads no images"
    if request.attachments and not reads_documents(request, worker):
        return unread_why(request, worker)
    if media is None:
        media = request_media(request)  # at once for a request of text alone
    refused = images_refused(request, worker, media)
    if refused is not None:
        return refused
    tokens = fewest_tokens(request, worker, media)
    if tokens >= worker.context_window:
        seen = media.tokens(worker, known_only=True)
        images = f" ({seen} of them its images and PDF pages)" if seen else ""
        return (
            f"worker {worker.name!r} has a {worker.context_window}-token context window; "
            f"the prompt has at least {tokens} tokens{images}"
        )
    return None
