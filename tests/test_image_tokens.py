"""An image's size read from its header, and each vendor's rule for what it costs, checked
against the examples the vendors publish."""

from __future__ import annotations

import base64
import io
import random

import pytest
from PIL import Image

from podium.config import WorkerConfig
from podium.image_tokens import (
    CLAUDE,
    GEMINI,
    GPT_4O,
    PRESETS,
    AreaRule,
    FlatRule,
    ImageSize,
    PatchRule,
    TileRule,
    image_size,
    preset_for_model,
)


def encoded(width: int, height: int, image_format: str, **save: object) -> str:
    buffer = io.BytesIO()
    mode = "RGBA" if save.pop("alpha", False) else "RGB"
    Image.new(mode, (width, height), (200, 30, 60)).save(buffer, image_format, **save)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("image_format", "save"),
    [
        ("PNG", {}),
        ("GIF", {}),
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("WEBP", {}),  # lossy: VP8
        ("WEBP", {"lossless": True}),  # VP8L
        ("WEBP", {"alpha": True, "exif": b"Exif\x00\x00" + b"\x00" * 64}),  # VP8X
    ],
)
def test_the_size_is_read_from_every_format_a_vendor_takes(
    image_format: str, save: dict[str, object]
) -> None:
    rng = random.Random(image_format + str(sorted(save)))
    for _ in range(5):
        width, height = rng.randrange(1, 3000), rng.randrange(1, 3000)
        data = encoded(width, height, image_format, **dict(save))
        assert image_size(data) == ImageSize(width, height)
        assert image_size(f"data:image/x;base64,{data}") == ImageSize(width, height)


def test_a_jpeg_is_read_past_long_metadata_without_decoding_it() -> None:
    # A colour profile and EXIF of ~200 KB come before the frame header.
    profile = bytes(random.Random(1).randrange(256) for _ in range(150_000))
    exif = b"Exif\x00\x00" + b"\x00" * 50_000
    data = encoded(1234, 567, "JPEG", icc_profile=profile, exif=exif)
    assert len(data) > 250_000
    assert image_size(data) == ImageSize(1234, 567)


def test_what_cannot_be_read_has_no_size_and_never_raises() -> None:
    png = encoded(40, 30, "PNG")
    jpeg = encoded(40, 30, "JPEG")
    rng = random.Random(7)
    cases = ["", "   ", "data:image/png;base64,", "data:image/png", "not base64 at all!", "AAAA"]
    cases += ["aGVsbG8=", f"data:image/png;base64,{png[:12]}"]
    cases += [png[:cut] for cut in (4, 12, 20, 30)]
    cases += [jpeg[:cut] for cut in (4, 8, 16, 40)]
    cases += [
        base64.b64encode(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))).decode()
        for _ in range(300)
    ]
    cases += [base64.b64encode(b"\xff\xd8" + b"\xff\xe1\x00\x02" * 600).decode()]  # no frame
    for case in cases:
        assert image_size(case) is None, case
    assert image_size("\n" + png + "\n") == ImageSize(40, 30)


def test_openais_published_examples() -> None:
    assert GPT_4O.tokens(ImageSize(1024, 1024), "high") == 765
    assert GPT_4O.tokens(ImageSize(2048, 4096), "high") == 1105
    assert GPT_4O.tokens(ImageSize(4096, 8192), "low") == 85
    assert GPT_4O.tokens(ImageSize(4096, 8192), None) == 1105  # unsaid (auto): as high
    patches = PRESETS["gpt-4.1"]
    assert patches.tokens(ImageSize(1024, 1024), None) == 1024
    assert patches.tokens(ImageSize(1800, 2400), None) == 1452
    assert PRESETS["gpt-4.1-mini"].tokens(ImageSize(1024, 1024), None) == 1659  # x 1.62
    assert PRESETS["gpt-4o-mini"].tokens(ImageSize(1024, 1024), None) == 2833 + 4 * 5667


def test_anthropics_published_examples() -> None:
    assert CLAUDE.tokens(ImageSize(200, 200), None) == 54
    assert CLAUDE.tokens(ImageSize(1000, 1000), None) == 1334
    assert CLAUDE.tokens(ImageSize(1092, 1092), None) == 1590
    # scaled to a 1,568-pixel long edge, and never past the resize ceiling
    assert CLAUDE.tokens(ImageSize(3136, 200), None) == CLAUDE.tokens(ImageSize(1568, 100), None)
    assert CLAUDE.tokens(ImageSize(8000, 8000), None) == 1600


def test_geminis_published_examples() -> None:
    assert GEMINI.tokens(ImageSize(384, 384), None) == 258
    assert GEMINI.tokens(ImageSize(600, 400), None) == 258
    assert GEMINI.tokens(ImageSize(1600, 900), None) == 258 * 3 * 2
    assert GEMINI.tokens(ImageSize(1600, 900), "low") == 258 * 3 * 2  # Gemini takes no detail


def test_every_rule_charges_at_least_something_and_grows_with_the_image() -> None:
    rules = [*PRESETS.values(), AreaRule(), TileRule(), PatchRule(), FlatRule(each=7)]
    for rule in rules:
        small = rule.tokens(ImageSize(1, 1), None)
        assert small >= 1
        assert rule.tokens(ImageSize(2000, 2000), None) >= rule.tokens(ImageSize(500, 500), None)


def test_a_model_takes_the_preset_of_its_longest_prefix() -> None:
    assert preset_for_model("gpt-4.1-mini-2025-04-14", GPT_4O) == PRESETS["gpt-4.1-mini"]
    assert preset_for_model("gpt-4.1-2025-04-14", GPT_4O) == PRESETS["gpt-4.1"]
    assert preset_for_model("gpt-4o-mini", GPT_4O) == PRESETS["gpt-4o-mini"]
    assert preset_for_model("gpt-4o-2024-08-06", CLAUDE) == GPT_4O
    assert preset_for_model("llava-v1.6", CLAUDE) == CLAUDE


def seeing(**extra: object) -> WorkerConfig:
    entry = {"name": "eye", "provider": "openai", "model": "m", "capabilities": ["vision"]}
    return WorkerConfig.model_validate(entry | extra)


def test_a_worker_names_a_preset_a_number_or_a_rule() -> None:
    assert seeing(image_tokens="gemini").image_rule == GEMINI
    assert seeing(image_tokens=576).image_rule == FlatRule(each=576)
    assert seeing(image_tokens={"kind": "patches", "patch": 28}).image_rule == PatchRule(patch=28)
    assert seeing().image_rule == CLAUDE  # nothing said, no provider's rule yet
    dumped = seeing(image_tokens="gpt-4.1-nano").model_dump()
    assert WorkerConfig.model_validate(dumped).image_rule == PRESETS["gpt-4.1-nano"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gpt-9", "unknown image-token preset 'gpt-9'; known: claude, gpt-4o"),
        ({"kind": "hexagons"}, "does not match any of the expected tags"),
        ({"kind": "tiles", "tile": 0}, "greater than 0"),
        (-5, "greater than or equal to 0"),
    ],
)
def test_a_wrong_image_rule_is_refused_saying_why(value: object, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        seeing(image_tokens=value)


def test_only_a_seeing_worker_may_set_image_tokens() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="only a worker with the 'vision' capability"):
        seeing(image_tokens="claude", capabilities=["streaming"])


def test_a_files_size_is_read_from_its_base64_length() -> None:
    from podium.image_tokens import base64_bytes

    for size in range(0, 40):
        data = base64.b64encode(bytes(size)).decode()
        assert base64_bytes(data) == size
        assert base64_bytes(f"data:image/png;base64,{data}\n") == size
    assert base64_bytes("data:image/png") == 0
