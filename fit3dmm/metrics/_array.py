"""numpy/torch interchange for the metrics: compute in torch, hand back the kind of array that came in."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = np.ndarray | Tensor


def as_tensor(x: ArrayLike, name: str) -> Tensor:
    """A numpy array or a torch tensor → a torch tensor (numpy arrays share memory unless read-only).

    Raises:
        ValueError: ``x`` is neither a numpy array nor a torch tensor.
    """
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x if x.flags.writeable else x.copy())
    raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


def like_input(result: Tensor, reference: ArrayLike) -> ArrayLike:
    """``result`` as a numpy array when ``reference`` is one, else unchanged."""
    if isinstance(reference, np.ndarray):
        return result.detach().cpu().numpy()
    return result
