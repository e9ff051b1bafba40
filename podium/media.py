"""What a request's images and PDF pages cost each worker in input tokens, beyond their text.

The text is counted once for every worker (podium/workers.py's estimates). What is not text
costs each worker by its own rules: an image by its upstream's image rule
(podium/image_tokens.py, ``WorkerConfig.image_rule``); a PDF page, for a worker that reads PDFs
itself, at its ``page_image_tokens``; a scanned PDF's pages drawn as images, for a worker that
reads images but not PDFs (podium/documents.py), by its image rule. :func:`request_media` reads
the sizes once a request, and :meth:`Media.tokens` prices them for each worker the budgets, the
cost ceiling, the context-window fit and the learned router consider.
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.config import WorkerConfig
from podium.image_tokens import CLAUDE, SeenImage, seen
from podium.types import ChatRequest, DocumentPart, ImagePart


@dataclass(frozen=True, slots=True)
class Media:
    """A request's images and PDF pages, as each worker is sent them."""

    images: tuple[SeenImage, ...] = ()
    pages: int = 0  # of PDFs read; a worker that reads PDFs itself is billed each as an image
    scans: tuple[SeenImage, ...] = ()  # pages of PDFs without text, drawn for vision workers

    def __bool__(self) -> bool:
        return bool(self.images or self.pages or self.scans)

    def tokens(self, worker: WorkerConfig, *, known_only: bool = False) -> int:
        """What ``worker`` is billed for them. ``known_only``: an image of unknown size counts
        as nothing, for a lower bound (else as :data:`~podium.image_tokens.UNKNOWN_SIZE`)."""
        tokens = 0
        capabilities = worker.capabilities
        if self.pages:
            tokens += self.pages * worker.page_image_tokens
        if self.images or (self.scans and "documents" not in capabilities):
            rule = worker.image_rule
            for image in self.images:
                tokens += image.tokens(rule, known_only=known_only)
            if "documents" not in capabilities and "vision" in capabilities:
                for scan in self.scans:
                    tokens += scan.tokens(rule)
        return tokens

    def refusal(self, worker: WorkerConfig) -> str | None:
        """Why ``worker``'s upstream would refuse the images it is sent (its vendor's limits:
        podium/upstream_profile.py), or None."""
        limits = worker.upstream.image_limits
        if limits is None or not (self.images or self.scans):
            return None
        capabilities = worker.capabilities
        sent = self.images
        if self.scans and "documents" not in capabilities and "vision" in capabilities:
            sent = (*sent, *self.scans)
        return limits.refusal(sent) if sent else None

    def unrouted_tokens(self) -> int:
        """Before any worker is chosen: the images by Claude's rule (PDF pages cost only a
        worker that reads PDFs itself, so nothing yet)."""
        return sum(image.tokens(CLAUDE) for image in self.images)


NO_MEDIA = Media()


def request_media(request: ChatRequest) -> Media:
    """The request's images (with their sizes, read from their headers) and PDF pages."""
    if not request.attachments and not request.has_images():
        return NO_MEDIA
    images: list[SeenImage] = []
    scans: list[SeenImage] = []
    pages = 0
    for message in request.messages:
        for part in message.content:
            if type(part) is ImagePart:
                images.append(seen(_data_of(part), part.detail))
            elif type(part) is DocumentPart:
                pages += part.pages
                if part.text is None:
                    scans.extend(seen(drawn) for drawn in part.page_images)
    return Media(tuple(images), pages, tuple(scans))


def _data_of(part: ImagePart) -> str | None:
    if part.data:
        return part.data
    if part.url and part.url.startswith("data:"):
        return part.url
    return None
