import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

def weight_sum(
    encoded: bytes, bits: int, weights: npt.NDArray[np.float32] | Buffer, /
) -> tuple[float, int]: ...
def indices(encoded: bytes, bits: int, /) -> list[int]: ...
