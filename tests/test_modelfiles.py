from __future__ import annotations

import hashlib
import importlib.util
import uuid
from pathlib import Path

import pytest

from podium.modelfiles import ModelFileError, PinnedModel, catalogue, chunk_paths, resolve


def chunk_packages(root: Path, pieces: list[bytes]) -> tuple[tuple[str, str], ...]:
    """Installed-looking packages ``<prefix>N/data/partNN.bin``, as the pool wheels lay out."""
    prefix = f"podium_test_chunks_{uuid.uuid4().hex[:8]}_part"
    chunks = []
    for index, piece in enumerate(pieces, start=1):
        package = root / f"{prefix}{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{index:02d}.bin").write_bytes(piece)
        chunks.append((f"{prefix}{index}", f"data/part{index:02d}.bin"))
    return tuple(chunks)


def pinned(chunks: tuple[tuple[str, str], ...], sha256: str) -> PinnedModel:
    return PinnedModel(
        name="tiny-test-model",
        title="Tiny test model",
        sha256=sha256,
        size=None,
        chunks=chunks,
        install_hint="pip install the-test-chunks",
        license="test",
    )


PIECES = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 3000, b"tail-bytes"]
WHOLE = b"".join(PIECES)
GOOD = hashlib.sha256(WHOLE).hexdigest()


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[str, str], ...]:
    root = tmp_path / "site"
    chunks = chunk_packages(root, PIECES)
    monkeypatch.syspath_prepend(str(root))
    return chunks


def test_chunks_are_assembled_in_order_once_and_verified(
    packages: tuple[tuple[str, str], ...], tmp_path: Path
) -> None:
    cache = tmp_path / "models"
    model = pinned(packages, GOOD)
    path = resolve(model, cache)
    assert path == cache / "tiny-test-model.gguf"
    assert path.read_bytes() == WHOLE
    first_assembly = path.stat().st_mtime_ns
    assert resolve(model, cache) == path  # cached: not assembled again
    assert path.stat().st_mtime_ns == first_assembly
    assert [p.name for p in cache.iterdir()] == ["tiny-test-model.gguf"]


def test_a_mismatch_is_refused_and_leaves_nothing(
    packages: tuple[tuple[str, str], ...], tmp_path: Path
) -> None:
    cache = tmp_path / "models"
    with pytest.raises(ModelFileError) as caught:
        resolve(pinned(packages, "0" * 64), cache)
    assert "refusing model 'tiny-test-model'" in str(caught.value)
    assert GOOD in str(caught.value)  # says what it found, and the pin
    assert list(cache.iterdir()) == []  # no partial or refused file to load by mistake


def test_a_tampered_cached_assembly_is_rebuilt(
    packages: tuple[tuple[str, str], ...], tmp_path: Path
) -> None:
    cache = tmp_path / "models"
    model = pinned(packages, GOOD)
    path = resolve(model, cache)
    path.write_bytes(b"tampered")
    assert resolve(model, cache).read_bytes() == WHOLE


def test_a_tampered_chunk_is_refused(packages: tuple[tuple[str, str], ...], tmp_path: Path) -> None:
    chunk = chunk_paths(pinned(packages, GOOD))[1]
    chunk.write_bytes(b"swapped upload")
    with pytest.raises(ModelFileError):
        resolve(pinned(packages, GOOD), tmp_path / "models")


def test_a_single_file_model_is_verified_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "site"
    chunks = chunk_packages(root, [WHOLE])
    monkeypatch.syspath_prepend(str(root))
    path = resolve(pinned(chunks, GOOD), tmp_path / "models")
    assert path.read_bytes() == WHOLE and not (tmp_path / "models").exists()
    with pytest.raises(ModelFileError):
        resolve(pinned(chunks, "f" * 64), tmp_path / "models")


def test_missing_packages_name_the_install_command(tmp_path: Path) -> None:
    model = pinned((("podium_no_such_package_part1", "data/part01.bin"),), GOOD)
    with pytest.raises(ModelFileError) as caught:
        resolve(model, tmp_path / "models")
    assert "podium_no_such_package_part1" in str(caught.value)
    assert "pip install the-test-chunks" in str(caught.value)


@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"])
def test_catalogue_paths_match_what_the_wheels_install(name: str) -> None:
    model = catalogue()[name]
    package = model.chunks[0][0]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (make pool installs the Qwen wheels)")
    paths = chunk_paths(model)
    assert len(paths) == len(model.chunks)
    if model.size is not None:
        assert sum(path.stat().st_size for path in paths) == model.size
