"""Mixup and CutMix on device, inside the train step, with timm.data.Mixup's meanings.

Example ``i`` of the batch is mixed with its flip partner ``B-1-i`` (timm pairs
``x`` with ``x.flip(0)``). The batch is the GLOBAL batch: under jit over a Mesh
the step sees it whole; under pmap the step all-gathers it, mixes, and keeps
its own slice (``mix_global_batch``), so both give the same numbers. Random
numbers come from one jax key, the same on every device.

The soft targets are timm's ``mixup_target``: the label-smoothed one-hot of
``y`` times ``lam`` plus that of ``y.flip(0)`` times ``1 - lam``, with ``lam``
corrected to the pasted box's area for CutMix (``correct_lam``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvit.errors import ConfigError

MODES = ("batch", "pair", "elem")
MIX_STREAM = 0x6D6978  # fold_in salt: the mixing key's stream, apart from dropout's


class MixParams(NamedTuple):
    """One draw of timm's per-batch / per-pair / per-element parameters (``n`` = 1, B//2, B).

    ``draws`` are the integer draws of the CutMix box, in the order timm's numpy
    calls make them: ``(cy, cx, _, _)`` for ``rand_bbox`` (box size from lam) or
    ``(cut_h, cut_w, yl, xl)`` for ``rand_bbox_minmax``.
    """

    lam: jax.Array  # (n,) float32: the Beta draw, 1.0 where this batch / element is not mixed
    use_cutmix: jax.Array  # (n,) bool
    draws: jax.Array  # (n, 4) int32


@dataclasses.dataclass(frozen=True)
class Mixup:
    """timm.data.Mixup: mixup (``mixup_alpha``) and/or cutmix (``cutmix_alpha`` or ``cutmix_minmax``)
    with probability ``mixup_prob`` per batch, pair or element (``mixup_mode``); when both are on,
    cutmix is chosen with probability ``switch_prob``."""

    num_classes: int
    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None
    mixup_prob: float = 1.0
    switch_prob: float = 0.5
    mixup_mode: str = "batch"
    correct_lam: bool = True
    label_smoothing: float = 0.1

    def __post_init__(self):
        if self.mixup_mode not in MODES:
            raise ConfigError(f"mixup_mode={self.mixup_mode!r} is not one of {MODES}")
        if self.cutmix_minmax is not None:
            if len(self.cutmix_minmax) != 2 or not 0 <= self.cutmix_minmax[0] < self.cutmix_minmax[1] <= 1:
                raise ConfigError(
                    f"cutmix_minmax={self.cutmix_minmax!r} must be (min, max) box ratios, 0 <= min < max <= 1"
                )
            object.__setattr__(self, "cutmix_alpha", 1.0)  # as timm: minmax forces cutmix_alpha = 1
        if self.mixup_alpha <= 0 and self.cutmix_alpha <= 0:
            raise ConfigError("Mixup needs mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax")

    @classmethod
    def from_config(cls, config, num_classes: int) -> Mixup | None:
        """The config's mixing, or None when mixup_alpha, cutmix_alpha and cutmix_minmax are all off."""
        minmax = tuple(config.cutmix_minmax) or None
        if config.mixup_alpha <= 0 and config.cutmix_alpha <= 0 and minmax is None:
            return None
        return cls(
            num_classes, config.mixup_alpha, config.cutmix_alpha, minmax, config.mixup_prob,
            config.switch_prob, config.mixup_mode, config.correct_lam, config.label_smoothing,
        )

    # --- parameters ------------------------------------------------------------------
    def num_params(self, batch_size: int) -> int:
        return {"batch": 1, "pair": batch_size // 2, "elem": batch_size}[self.mixup_mode]

    def sample(self, key: jax.Array, batch_size: int, img_hw: tuple[int, int]) -> MixParams:
        """timm's ``_params_per_batch`` / ``_params_per_elem`` and box draws, from ``key``."""
        n = self.num_params(batch_size)
        k_switch, k_cut, k_mix, k_prob, k_box = jax.random.split(key, 5)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = jax.random.uniform(k_switch, (n,)) < self.switch_prob
            lam = jnp.where(use_cutmix, jax.random.beta(k_cut, self.cutmix_alpha, self.cutmix_alpha, (n,)),
                            jax.random.beta(k_mix, self.mixup_alpha, self.mixup_alpha, (n,)))
        elif self.mixup_alpha > 0:
            use_cutmix = jnp.zeros((n,), bool)
            lam = jax.random.beta(k_mix, self.mixup_alpha, self.mixup_alpha, (n,))
        else:
            use_cutmix = jnp.ones((n,), bool)
            lam = jax.random.beta(k_cut, self.cutmix_alpha, self.cutmix_alpha, (n,))
        applied = jax.random.uniform(k_prob, (n,)) < self.mixup_prob
        lam = jnp.where(applied, lam, 1.0).astype(jnp.float32)
        return MixParams(lam, use_cutmix & applied, self._box_draws(k_box, n, img_hw))

    def _box_draws(self, key, n: int, img_hw) -> jax.Array:
        h, w = img_hw
        ks = jax.random.split(key, 4)
        if self.cutmix_minmax is None:  # rand_bbox: box centre
            cy = jax.random.randint(ks[0], (n,), 0, h)
            cx = jax.random.randint(ks[1], (n,), 0, w)
            return jnp.stack([cy, cx, jnp.zeros_like(cy), jnp.zeros_like(cx)], 1)
        lo, hi = self.cutmix_minmax  # rand_bbox_minmax: box size, then its corner
        cut_h = jax.random.randint(ks[0], (n,), int(h * lo), int(h * hi))
        cut_w = jax.random.randint(ks[1], (n,), int(w * lo), int(w * hi))
        yl = jax.random.randint(ks[2], (n,), 0, h - cut_h + 1)
        xl = jax.random.randint(ks[3], (n,), 0, w - cut_w + 1)
        return jnp.stack([cut_h, cut_w, yl, xl], 1)

    def per_example(self, params: MixParams, batch_size: int) -> MixParams:
        """The parameters of every example: one for the batch, pair ``i`` shared by ``B-1-i``."""
        if self.mixup_mode == "batch":
            return jax.tree.map(lambda a: jnp.repeat(a, batch_size, 0), params)
        if self.mixup_mode == "pair":
            return jax.tree.map(lambda a: jnp.concatenate([a, a[::-1]], 0), params)
        return params

    def boxes(self, params: MixParams, img_hw: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
        """timm's ``cutmix_bbox_and_lam``: boxes ``(yl, yh, xl, xh)`` (n, 4) and the corrected lam."""
        h, w = img_hw
        d = params.draws
        if self.cutmix_minmax is None:
            ratio = jnp.sqrt(1.0 - params.lam)
            cut_h, cut_w = (h * ratio).astype(jnp.int32), (w * ratio).astype(jnp.int32)
            yl, yh = jnp.clip(d[:, 0] - cut_h // 2, 0, h), jnp.clip(d[:, 0] + (cut_h + 1) // 2, 0, h)
            xl, xh = jnp.clip(d[:, 1] - cut_w // 2, 0, w), jnp.clip(d[:, 1] + (cut_w + 1) // 2, 0, w)
        else:
            yl, xl = d[:, 2], d[:, 3]
            yh, xh = yl + d[:, 0], xl + d[:, 1]
        box = jnp.stack([yl, yh, xl, xh], 1)
        cut = params.use_cutmix & (params.lam != 1.0)  # timm mixes only where lam != 1
        lam = params.lam
        if self.correct_lam or self.cutmix_minmax is not None:
            area = ((yh - yl) * (xh - xl)).astype(jnp.float32)
            lam = jnp.where(cut, 1.0 - area / float(h * w), lam)
        return jnp.where(cut[:, None], box, 0), lam

    # --- mixing ------------------------------------------------------------------------
    def apply(self, params: MixParams, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mixes NHWC ``images`` with their flip partners; returns them and timm's soft targets."""
        b, h, w = images.shape[:3]
        p = self.per_example(params, b)
        box, lam = self.boxes(p, (h, w))
        flipped = images[::-1]
        lam_img = jnp.where(p.use_cutmix, 1.0, lam).astype(images.dtype)[:, None, None, None]
        mixed = images * lam_img + flipped * (1 - lam_img)
        rows, cols = jnp.arange(h), jnp.arange(w)
        in_y = (rows >= box[:, :1]) & (rows < box[:, 1:2])
        in_x = (cols >= box[:, 2:3]) & (cols < box[:, 3:4])
        inside = (in_y[:, :, None] & in_x[:, None, :])[..., None]
        mixed = jnp.where(inside, flipped, mixed)
        return mixed, mixup_target(labels, self.num_classes, lam, self.label_smoothing)

    def __call__(self, key: jax.Array, images: jax.Array, labels: jax.Array):
        b = images.shape[0]
        if b % 2:
            raise ConfigError(f"mixup/cutmix needs an even global batch (timm pairs i with B-1-i); got {b}")
        return self.apply(self.sample(key, b, images.shape[1:3]), images, labels)


def mixup_target(labels: jax.Array, num_classes: int, lam, smoothing: float = 0.0) -> jax.Array:
    """timm's ``mixup_target``: smoothed one-hot of y times lam plus that of y.flip(0) times 1 - lam."""
    off = smoothing / num_classes
    y1 = jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + off
    lam = jnp.reshape(jnp.asarray(lam, jnp.float32), (-1, 1))
    return y1 * lam + y1[::-1] * (1.0 - lam)


def mix_global_batch(mixup: Mixup, key: jax.Array, batch: dict, axis_name: str | None = None) -> dict:
    """Mixes the global batch. Under pmap (``axis_name``) each device gathers it, mixes it with
    the same key, and keeps its own slice: the numbers of the step that sees the batch whole."""
    if axis_name is None:
        images, targets = mixup(key, batch["image"], batch["label"])
        return dict(batch, image=images, label=targets)
    local = batch["image"].shape[0]
    full = jax.lax.all_gather({k: batch[k] for k in ("image", "label")}, axis_name, tiled=True)
    images, targets = mixup(key, full["image"], full["label"])
    start = jax.lax.axis_index(axis_name) * local
    return dict(batch, image=_rows(images, start, local), label=_rows(targets, start, local))


def _rows(x: jax.Array, start, n: int) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(x, start, n, 0)


def check_config(config) -> None:
    """Fails on a bad mixing setting with the key to change."""
    if config.mixup_mode not in MODES:
        raise ConfigError(f"config.mixup_mode={config.mixup_mode!r} is not one of {MODES}")
    for key in ("mixup_prob", "switch_prob"):
        if not 0.0 <= config[key] <= 1.0:
            raise ConfigError(f"config.{key}={config[key]} must be a probability in [0, 1]")
    if Mixup.from_config(config, 2) is not None and config.global_batch_size % 2:
        raise ConfigError(
            f"mixup/cutmix pair example i with B-1-i: make global_batch_size {config.global_batch_size} even"
        )
