"""Window attention helpers (Swin and later windowed families), NHWC.

Partitioning and its inverse are reshapes traced into the model; the relative
position index and the shifted-window mask depend only on static shapes, so
they are numpy constants computed once per shape (cached), never parameters.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# The additive mask value timm uses between tokens of different shifted regions.
MASK_VALUE = -100.0


def clamp_window(
    resolution: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """timm's rule: a side no larger than its window becomes one window, unshifted."""
    win = tuple(r if r <= w else w for r, w in zip(resolution, window))
    sft = tuple(0 if r <= w else s for r, w, s in zip(resolution, win, shift))
    return win, sft


def pad_to_windows(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Zero-pads (B, H, W, C) at the bottom/right to a multiple of ``window``."""
    pad_h = -x.shape[1] % window[0]
    pad_w = -x.shape[2] % window[1]
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    return x


def window_partition(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """(B, H, W, C) -> (B * num_windows, wh * ww, C), windows in row-major order per image."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def window_reverse(windows: jax.Array, window: tuple[int, int], h: int, w: int) -> jax.Array:
    """Inverse of ``window_partition``: (B * num_windows, wh * ww, C) -> (B, H, W, C)."""
    wh, ww = window
    c = windows.shape[-1]
    x = windows.reshape(-1, h // wh, w // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def windows_last(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """(B, H, W, C) -> (B, wh * ww, num_windows, C): ``window_partition``'s windows, each image's
    kept together and the window index next to the channels. Attention then folds the windows
    into its head axis, (B, N, num_windows * heads, head_dim), so that a bias shared by every
    image (Swin's relative positions plus its shift mask) broadcasts over the batch instead of
    being repeated per image (on the fused kernel as in XLA's attention)."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, wh * ww, -1, c)


def windows_last_reverse(windows: jax.Array, window: tuple[int, int], h: int, w: int) -> jax.Array:
    """Inverse of ``windows_last``: (B, wh * ww, num_windows, C) -> (B, H, W, C)."""
    b, _, _, c = windows.shape
    wh, ww = window
    x = windows.reshape(b, wh, ww, h // wh, w // ww, c).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(b, h, w, c)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.cache
def relative_position_index(win_h: int, win_w: int) -> np.ndarray:
    """(N, N) int32 index into a ((2*wh-1) * (2*ww-1), heads) bias table, N = wh * ww."""
    coords = np.stack(np.meshgrid(np.arange(win_h), np.arange(win_w), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N), each in [-(w-1), w-1]
    index = (rel[0] + win_h - 1) * (2 * win_w - 1) + (rel[1] + win_w - 1)
    return _frozen(index.astype(np.int32))


def relative_position_bias(table: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Gathers a (num_relative_positions, heads) table into a (heads, N, N) bias."""
    n = window[0] * window[1]
    bias = table[relative_position_index(*window).reshape(-1)].reshape(n, n, -1)
    return bias.transpose(2, 0, 1)


@functools.cache
def shifted_window_mask(
    height: int, width: int, window: tuple[int, int], shift: tuple[int, int]
) -> np.ndarray | None:
    """(num_windows, N, N) additive mask for SW-MSA on an (already padded) H x W map:
    0 within a region, MASK_VALUE across the regions the cyclic shift brought together.
    None when there is no shift."""
    if not any(shift):
        return None
    region = np.zeros((height, width), np.float32)
    bounds = [((0, -win), (-win, -s), (-s, None)) for win, s in zip(window, shift)]
    label = 0
    for h0, h1 in bounds[0]:
        for w0, w1 in bounds[1]:
            region[h0:h1, w0:w1] = label
            label += 1
    ids = np.asarray(window_partition(region[None, :, :, None], window))[..., 0]  # (nW, N)
    mask = np.where(ids[:, None, :] != ids[:, :, None], MASK_VALUE, 0.0).astype(np.float32)
    return _frozen(mask)
