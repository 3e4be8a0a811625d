"""A regular grid of anchor positions in the crop's pixel frame (PRDL's anchor set A)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AnchorGrid:
    """H × W anchors at ``(x, y) = origin + stride · (col, row)``, listed row-major (index = row · W + col).

    The default PRDL anchor set of an S × S crop is :meth:`full` ``(S)``: one anchor per pixel centre, the
    pixel (row r, col c) at (x, y) = (c, r) as everywhere in fit3dmm.
    """

    height: int
    width: int
    stride: float = 1.0
    origin: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"AnchorGrid needs height, width >= 1, got {self.height} x {self.width}")
        if not self.stride > 0:
            raise ValueError(f"AnchorGrid stride must be > 0, got {self.stride}")

    @staticmethod
    def full(size: int, stride: int = 1) -> AnchorGrid:
        """Anchors at every ``stride``-th pixel centre of a ``size`` × ``size`` crop, from pixel (0, 0)."""
        if size < 1 or stride < 1:
            raise ValueError(f"AnchorGrid.full needs size, stride >= 1, got size={size}, stride={stride}")
        n = (size - 1) // stride + 1
        return AnchorGrid(n, n, float(stride))

    @property
    def num_anchors(self) -> int:
        return self.height * self.width

    def points(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        """(H·W, 2) anchor positions (x, y), row-major."""
        cols = torch.arange(self.width, dtype=dtype, device=device) * self.stride + self.origin[0]
        rows = torch.arange(self.height, dtype=dtype, device=device) * self.stride + self.origin[1]
        yy, xx = torch.meshgrid(rows, cols, indexing="ij")
        return torch.stack([xx, yy], dim=-1).reshape(-1, 2)
