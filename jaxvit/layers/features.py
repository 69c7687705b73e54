"""timm's feature-extraction helpers, written once for every family's ``forward_intermediates``.

``feature_take_indices`` turns timm's ``indices`` argument (None: all; an int n: the last n; a
list: those, negatives from the end) into absolute indices; ``FeatureInfo`` is timm's
``feature_info`` accessor (``channels()``, ``reduction()``, ``module_name()``) over a model's
list of ``dict(module=, num_chs=, reduction=)``; ``tokens_to`` / ``map_to`` lay an intermediate
out as asked: jaxvit's images are NHWC, so spatial features default to 'NHWC'; 'NCHW' is timm's
layout, 'NLC' the token sequence.

A family adopts the interface by deriving from ``Prunable`` (or ``Intermediates``, with its
own ``prune_intermediate_layers``) and writing ``_intermediates`` with these helpers, keeping
``feature_info`` and setting ``default_out_indices`` (what timm's ``features_only`` takes when
``out_indices`` is not given); ``jaxvit.models.features.FeatureGetterNet`` does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from jaxvit.errors import ConfigError

OUTPUT_FMTS = ("NHWC", "NCHW", "NLC")
Indices = int | Sequence[int] | None


def feature_take_indices(num_features: int, indices: Indices = None, what: str = "blocks") -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: (absolute indices to take, the largest of them).

    ``indices``: None takes all ``num_features``; an int n the last n; a sequence those indices,
    a negative one counted from the end. Out of range is one ConfigError (a ValueError) naming
    the valid range; ``what`` names the features in it ('blocks', 'stages')."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ConfigError(
                f"indices={indices} takes the last n of {num_features} {what}, n in 1..{num_features}; "
                f"pass an int in that range or a list of indices in {-num_features}..{num_features - 1}"
            )
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            if not -num_features <= i < num_features:
                raise ConfigError(
                    f"feature index {i} is out of range for {num_features} {what}: pass indices in "
                    f"0..{num_features - 1}, or {-num_features}..-1 counted from the end"
                )
            take.append(i % num_features)
        if not take:
            raise ConfigError(f"indices is an empty list; pass at least one index in 0..{num_features - 1}")
    return take, max(take)


def check_output_fmt(output_fmt: str, allowed: Sequence[str] = OUTPUT_FMTS, owner: str = "") -> str:
    if output_fmt not in allowed:
        raise ConfigError(f"{owner + ': ' if owner else ''}output_fmt {output_fmt!r} is not one of {tuple(allowed)}")
    return output_fmt


def tokens_to(x: jax.Array, grid: tuple[int, int], output_fmt: str) -> jax.Array:
    """(B, H*W, C) patch tokens, row-major over the ``grid`` (H, W), in ``output_fmt``."""
    if output_fmt == "NLC":
        return x
    return map_to(x.reshape(x.shape[0], *grid, x.shape[-1]), output_fmt)


def map_to(x: jax.Array, output_fmt: str) -> jax.Array:
    """A (B, H, W, C) feature map in ``output_fmt`` ('NLC': flattened row-major)."""
    if output_fmt == "NCHW":
        return x.transpose(0, 3, 1, 2)
    if output_fmt == "NLC":
        return x.reshape(x.shape[0], -1, x.shape[-1])
    return x


def split_prefix(tokens: list[jax.Array], num_prefix_tokens: int) -> tuple[list[jax.Array], list[jax.Array]]:
    """Each (B, prefix + patches, C) intermediate as (patch tokens, prefix tokens)."""
    return [y[:, num_prefix_tokens:] for y in tokens], [y[:, :num_prefix_tokens] for y in tokens]


def _as_tuple(out_indices: Indices) -> tuple[int, ...]:
    return tuple(range(-out_indices, 0)) if isinstance(out_indices, int) else tuple(out_indices)


class FeatureInfo:
    """timm's ``FeatureInfo``: a model's feature list (``module``, ``num_chs``, ``reduction`` per
    feature) and the ``out_indices`` taken from it (an int n: the last n)."""

    def __init__(self, feature_info: Sequence[dict[str, Any]], out_indices: Indices):
        self.info = [dict(fi, index=fi.get("index", i)) for i, fi in enumerate(feature_info)]
        self.out_indices = _as_tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None):
        """``key`` of each feature taken (idx None), of feature ``idx``, or of each in ``idx``."""
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None):
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo(out_indices={self.out_indices}, channels={self.channels()}, reduction={self.reduction()})"


def run_blocks(blocks, x: Any, take: list[int], last: int, stop_early: bool, tap) -> tuple[Any, list]:
    """A family's block loop for ``forward_intermediates``: each block through ``block_call``
    (``x`` a tuple where blocks take several streams, as TnT's), ``tap(x)`` kept after every
    block in ``take``; ``stop_early``: no block after ``last`` runs. Returns (x, taps)."""
    from jaxvit.layers.remat import block_call

    taps = []
    for i, blk in enumerate(list(blocks)[: last + 1] if stop_early else blocks):
        x = block_call(blk, *x) if isinstance(x, tuple) else block_call(blk, x)
        if i in take:
            taps.append(tap(x))
    return x, taps


def prune_blocks(
    model, indices: Indices, prune_norm: bool, prune_head: bool, global_pool: str | None = ""
) -> list[int]:
    """timm's ``prune_intermediate_layers`` for a model with ``blocks`` and a final ``norm``:
    drops the blocks after the last of ``indices`` (``prune_norm``: the final norm;
    ``prune_head``: the classifier, 0 classes, pooling ``global_pool``). Returns the indices."""
    from flax import nnx

    take, last = feature_take_indices(len(model.blocks), indices)
    model.blocks = nnx.List(list(model.blocks)[: last + 1])
    if prune_norm:
        model.norm = None
    if prune_head:
        model.reset_classifier(0, global_pool)
    return take


def prune_stages(model, stages: str, indices: Indices, prune_norm: bool, prune_head: bool) -> list[int]:
    """timm's ``prune_intermediate_layers`` for a staged model (Swin's ``layers``, MViTv2's
    ``stages``): drops the stages after the last of ``indices`` and, when the last stage goes,
    the final norm and the head (sized for it), ``num_features`` becoming the new last stage's
    width; ``prune_norm`` / ``prune_head`` drop those anyway. Returns the indices, absolute."""
    from flax import nnx

    kept = list(getattr(model, stages))
    take, last = feature_take_indices(len(kept), indices, "stages")
    prune_end = last < len(kept) - 1
    setattr(model, stages, nnx.List(kept[: last + 1]))
    if prune_norm or prune_end:
        model.norm = None
    if prune_end:
        model.num_features = model.feature_info[last]["num_chs"]
    if prune_head or prune_end:
        model.reset_classifier(0, "")
    return take


class Intermediates:
    """timm's ``forward_intermediates`` for every family: the arguments checked and the indices
    resolved here; the family's ``_intermediates(x, take, last, *, norm, stop_early, output_fmt,
    **options)`` runs its blocks or stages and returns (final features, intermediates).
    ``feature_blocks`` names the blocks or stages the indices count; ``intermediate_fmts``, the
    layouts the family gives."""

    feature_blocks: str = "blocks"
    intermediate_fmts: tuple[str, ...] = OUTPUT_FMTS
    intermediate_options: tuple[str, ...] = ()  # the family's own keywords of forward_intermediates

    def _feature_count(self) -> int:
        return len(getattr(self, self.feature_blocks))

    def forward_intermediates(
        self,
        x: jax.Array,
        indices: Indices = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NHWC",
        intermediates_only: bool = False,
        **options: Any,
    ):
        """timm's ``forward_intermediates``: the outputs of the blocks (stages, for a staged
        family) ``indices`` names (None: all; an int n: the last n; a list: those, negatives from
        the end). NHWC by default, as jaxvit's images, (B, H/p, W/p, C); ``output_fmt='NCHW'`` is
        timm's layout, 'NLC' the tokens. ``norm``: through the final norm; ``stop_early``: no block
        after the last taken runs. Returns (final features, intermediates), or the list alone
        (``intermediates_only``). ``options``: the family's own (ViT's and TnT's
        ``return_prefix_tokens``); what else it does differently, its ``_intermediates`` says."""
        owner = f"{type(self).__name__}.forward_intermediates"
        unknown = sorted(set(options) - set(self.intermediate_options))
        if unknown:
            raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
        output_fmt = check_output_fmt(output_fmt, self.intermediate_fmts, owner=owner)
        what = "blocks" if self.feature_blocks == "blocks" else "stages"
        take, last = feature_take_indices(self._feature_count(), indices, what)
        final, intermediates = self._intermediates(
            x, take, last, norm=norm, stop_early=stop_early, output_fmt=output_fmt, **options
        )
        return intermediates if intermediates_only else (final, intermediates)


def run_stages(stages, x: jax.Array, take: list[int], last: int, stop_early: bool, tap) -> tuple[jax.Array, list]:
    """A staged family's loop for ``_intermediates``: ``tap(i, x)`` kept after every stage in
    ``take``; ``stop_early``: no stage after ``last`` runs. Returns (x, taps)."""
    taps = []
    for i, stage in enumerate(list(stages)[: last + 1] if stop_early else stages):
        x = stage(x)
        if i in take:
            taps.append(tap(i, x))
    return x, taps


class Prunable(Intermediates):
    """timm's ``prune_intermediate_layers`` and the final norm it may drop, for a family whose
    ``feature_blocks`` attribute names its blocks ("blocks": a flat stack, ``prune_blocks``) or
    its stages ("layers", "stages": ``prune_stages``) and whose final norm is ``norm``."""

    def _norm(self, x: jax.Array) -> jax.Array:
        return x if self.norm is None else self.norm(x)  # None: pruned (prune_intermediate_layers)

    def prune_intermediate_layers(
        self, indices: Indices = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's: drops the blocks (stages) after the last of ``indices`` (``prune_norm``: the final
        norm; ``prune_head``: the pooling and classifier, 0 classes). Returns the indices, absolute."""
        if self.feature_blocks == "blocks":
            return prune_blocks(self, indices, prune_norm, prune_head)
        return prune_stages(self, self.feature_blocks, indices, prune_norm, prune_head)
