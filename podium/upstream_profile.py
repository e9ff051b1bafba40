"""What a worker's upstream does that its configuration does not say, as its provider knows
it: how it bills an image, whether it takes a PDF by URL. A provider reports it
(``ProfiledProvider.upstream_profile()``, podium/providers/base.py) and the pool gives it to
the worker's configuration, where the estimates (podium/media.py) and the fit
(podium/routing/fit.py) read it."""

from __future__ import annotations

from dataclasses import dataclass

from podium.image_tokens import ImageRule


@dataclass(frozen=True, slots=True)
class UpstreamProfile:
    image_rule: ImageRule | None = None  # None: not known (Claude's is assumed)
    document_urls: bool = True  # a PDF given by URL is fetched by the upstream itself


UNKNOWN_UPSTREAM = UpstreamProfile()
