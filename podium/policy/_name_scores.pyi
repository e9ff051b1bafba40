from typing import Any

def winner(
    tables: tuple[Any, ...],
    lower: str,
    length: int,
    word_shape: str,
    usual: bool,
    start: bool,
    before: str,
    before2: str,
    after: str,
    after2: str,
    before_shape: str,
    after_shape: str,
    after_usual: bool,
    previous: str,
    previous2: str,
    /,
) -> int | None: ...
def tag(
    tables: tuple[Any, ...],
    labels: tuple[str, ...],
    common: frozenset[str],
    sentence_words: frozenset[str],
    triggers: bytes,
    emitted: int,
    text: str,
    /,
) -> list[tuple[int, int, int]] | None: ...
