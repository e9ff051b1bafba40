import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

# `encoded`: ngrams.prepared()'s bytes, or an ASCII str (prepared by the module itself).
def weight_sum(
    encoded: bytes | str, bits: int, weights: npt.NDArray[np.float32] | Buffer, /
) -> tuple[float, int]: ...
def indices(encoded: bytes | str, bits: int, /) -> list[int]: ...
