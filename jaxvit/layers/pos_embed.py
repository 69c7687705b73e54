"""Position-embedding resampling at load time (prefix tokens kept), as timm does."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

# (grid (1, H, W, D), new (h, w)) -> (1, h, w, D)
GridResize = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def jax_bicubic(grid: np.ndarray, new_grid: tuple[int, int]) -> np.ndarray:
    """Bicubic resize in JAX. Its kernel (a=-0.5) differs from torch's (a=-0.75);
    the converter passes torch's resize when exact timm parity matters."""
    shape = (grid.shape[0], *new_grid, grid.shape[-1])
    return np.asarray(jax.image.resize(grid, shape, method="bicubic", antialias=True))


def resample_abs_pos_embed(
    pos_embed: np.ndarray,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    resize: GridResize = jax_bicubic,
) -> np.ndarray:
    """Resamples a (1, prefix + H*W, D) embedding to ``new_grid``."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, dim = grid.shape[1], grid.shape[2]
    if old_grid is None:
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"cannot infer a square grid from {n} position tokens; pass old_grid")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    grid = resize(grid.reshape(1, old_grid[0], old_grid[1], dim), tuple(new_grid))
    grid = grid.reshape(1, new_grid[0] * new_grid[1], dim).astype(pos_embed.dtype)
    return np.concatenate([prefix, grid], axis=1)
