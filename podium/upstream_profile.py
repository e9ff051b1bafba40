"""What a worker's upstream does that its configuration does not say, as its provider knows
it: how it bills an image, which images it refuses, whether it takes a PDF by URL. A provider
reports it (``ProfiledProvider.upstream_profile()``, podium/providers/base.py) and the pool
gives it to the worker's configuration, where the estimates (podium/media.py) and the fit
(podium/routing/fit.py) read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from podium.image_tokens import ImageRule, SeenImage

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """The images an upstream refuses, as its vendor documents them: more than
    ``most_images`` in a request, one file over ``most_bytes`` or all over
    ``most_total_bytes``, a side over ``most_side`` pixels (``most_side_many`` once a request
    has more than ``many`` images). An image given by URL is checked for its count alone."""

    most_images: int | None = None
    most_bytes: int | None = None
    most_total_bytes: int | None = None
    most_side: int | None = None
    many: int | None = None
    most_side_many: int | None = None

    def refusal(self, images: Sequence[SeenImage]) -> str | None:
        """Why the upstream would refuse ``images`` (said after the worker's name), or None."""
        count = len(images)
        if self.most_images is not None and count > self.most_images:
            return f"takes at most {self.most_images} images a request; this one has {count}"
        side, crowded = self.most_side, ""
        if self.many is not None and self.most_side_many is not None and count > self.many:
            side, crowded = self.most_side_many, f" in a request of more than {self.many}"
        total = 0
        for number, image in enumerate(images, 1):
            size = image.bytes
            if size is not None:
                total += size
                if self.most_bytes is not None and size > self.most_bytes:
                    return (
                        f"takes images of at most {_mb(self.most_bytes)}; image {number} has "
                        f"{_mb(size)}"
                    )
            shape = image.size
            if side is not None and shape is not None and max(shape.width, shape.height) > side:
                return (
                    f"takes images of at most {side} pixels a side{crowded}; image {number} "
                    f"is {shape.width}x{shape.height}"
                )
        if self.most_total_bytes is not None and total > self.most_total_bytes:
            return (
                f"takes at most {_mb(self.most_total_bytes)} of images a request; these have "
                f"{_mb(total)}"
            )
        return None


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB"


@dataclass(frozen=True, slots=True)
class UpstreamProfile:
    image_rule: ImageRule | None = None  # None: not known (Claude's is assumed)
    image_limits: ImageLimits | None = None  # None: none known
    document_urls: bool = True  # a PDF given by URL is fetched by the upstream itself


UNKNOWN_UPSTREAM = UpstreamProfile()
# The vendors' documented limits.
ANTHROPIC_IMAGES = ImageLimits(
    most_images=100, most_bytes=5 * MB, most_side=8000, many=20, most_side_many=2000
)
OPENAI_IMAGES = ImageLimits(most_images=500, most_bytes=20 * MB, most_total_bytes=50 * MB)
GEMINI_IMAGES = ImageLimits(most_images=3600)
