"""Position embeddings: resampling a learned table at load time (prefix tokens kept), as timm
does, and the fixed Fourier features of perceiver-pytorch.

One kernel everywhere (the trainer's init_from, ``create_model(checkpoint=)``, the
converter, and a ``dynamic_img_size`` ViT's forward): torch's ``F.interpolate(mode='bicubic',
antialias=True, align_corners=False)``, what timm's ``resample_abs_pos_embed`` calls, written
in numpy so the core needs no torch. In a forward pass the sizes are static, so the numpy
weights are constants of the traced program.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel; torch's antialiased bicubic uses a = -0.5 (PIL's), its
    plain bicubic a = -0.75: timm resamples with antialias=True, so -0.5."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of torch's antialiased bicubic resize along one axis
    (aten's ``_compute_weights_aa``): the filter widened by the scale when shrinking, taps
    clipped to the input and renormalized (no border replication)."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0  # bicubic: 4 taps, half on each side
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)  # int(): C++'s truncating cast
        hi = min(int(center + support + 0.5), in_size)
        w = _cubic((np.arange(lo, hi) - center + 0.5) * inv)
        total = w.sum()
        weights[i, lo:hi] = w / total if total != 0.0 else w
    return weights


def bicubic_resize(grid: np.ndarray, new_grid: tuple[int, int]) -> np.ndarray:
    """(B, H, W, D) -> (B, h, w, D) as torch's bicubic, antialias=True, align_corners=False."""
    grid = np.asarray(grid)
    rows = resize_matrix(grid.shape[1], int(new_grid[0]))
    cols = resize_matrix(grid.shape[2], int(new_grid[1]))
    out = np.einsum("hH,wW,bHWd->bhwd", rows, cols, grid.astype(np.float64))
    return out.astype(np.float32)


def resample_abs_pos_embed(
    pos_embed: np.ndarray,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
) -> np.ndarray:
    """Resamples a (1, prefix + H*W, D) embedding to ``new_grid``, the prefix tokens kept."""
    pos_embed = np.asarray(pos_embed)
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, dim = grid.shape[1], grid.shape[2]
    if old_grid is None:
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"cannot infer a square grid from {n} position tokens; pass old_grid")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    grid = bicubic_resize(grid.reshape(1, old_grid[0], old_grid[1], dim), tuple(new_grid))
    grid = grid.reshape(1, new_grid[0] * new_grid[1], dim).astype(pos_embed.dtype)
    return np.concatenate([prefix, grid], axis=1)


def resample_abs_pos_embed_traced(
    pos_embed: jax.Array, new_grid: tuple[int, int], old_grid: tuple[int, int], num_prefix_tokens: int
) -> jax.Array:
    """``resample_abs_pos_embed`` on a traced (1, prefix + H*W, D) table (a forward pass)."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    rows = jnp.asarray(resize_matrix(old_grid[0], new_grid[0]), jnp.float32)
    cols = jnp.asarray(resize_matrix(old_grid[1], new_grid[1]), jnp.float32)
    grid = grid.reshape(1, old_grid[0], old_grid[1], -1).astype(jnp.float32)
    grid = jnp.einsum("hH,wW,bHWd->bhwd", rows, cols, grid).reshape(1, new_grid[0] * new_grid[1], -1)
    return jnp.concatenate([prefix, grid.astype(pos_embed.dtype)], axis=1)


def fourier_encode(x: np.ndarray, max_freq: float, num_bands: int) -> np.ndarray:
    """perceiver-pytorch's ``fourier_encode``: (...,) -> (..., 2 * num_bands + 1)."""
    x = x[..., None]
    scales = np.linspace(1.0, max_freq / 2, num_bands)
    xs = x * scales * math.pi
    return np.concatenate([np.sin(xs), np.cos(xs), x], axis=-1)


def position_features(size: tuple[int, ...], max_freq: float, num_bands: int) -> np.ndarray:
    """(*size, len(size) * (2 * num_bands + 1)) Fourier features of the grid in [-1, 1]."""
    axis_pos = [np.linspace(-1.0, 1.0, n) for n in size]
    pos = np.stack(np.meshgrid(*axis_pos, indexing="ij"), axis=-1)
    enc = fourier_encode(pos, max_freq, num_bands)
    return enc.reshape(*size, -1).astype(np.float32)
