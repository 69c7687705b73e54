"""``create_model(name, features_only=True, out_indices=...)``: timm's feature-extraction wrapper.

timm wraps its ViT, Mixer, TnT and MViTv2 in ``FeatureGetterNet`` (``forward_intermediates``
of the blocks or stages ``out_indices`` names, the model pruned after the last) and
Inception-v4 and Swin in ``FeatureListNet`` (the outputs of the modules ``feature_info``
names, the layers after the last dropped; Swin's maps NHWC, un-normalized). Both give the same
maps for these families, so one wrapper serves all: ``FeatureGetterNet`` here. A family takes
part by having ``forward_intermediates``, ``prune_intermediate_layers``, ``feature_info`` and
``default_out_indices`` (``jaxvit.layers.features``).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from jaxvit._compat import quick_tracer_probes
from jaxvit.errors import ConfigError
from jaxvit.layers.features import FeatureInfo, Indices, check_output_fmt

FEATURE_KWARGS = ("features_only", "out_indices", "output_fmt")


class FeatureGetterNet(nnx.Module):
    """timm's ``FeatureGetterNet``: ``model(x)`` is the list of the intermediates ``out_indices``
    names (``forward_intermediates(..., intermediates_only=True)``), NHWC by default as jaxvit's
    images are (``output_fmt='NCHW'``: timm's layout; 'NLC': token sequences, where the family
    has them). With ``prune`` (timm's default) the model loses the blocks after the last index,
    its head, and its final norm unless ``norm``; ``out_indices`` are then absolute.
    ``feature_info.channels()`` / ``.reduction()`` describe the outputs, as timm's."""

    def __init__(
        self,
        model: nnx.Module,
        out_indices: Indices = None,
        *,
        output_fmt: str = "NHWC",
        norm: bool = False,
        prune: bool = True,
    ):
        if not hasattr(model, "forward_intermediates"):
            raise ConfigError(
                f"{type(model).__name__} has no forward_intermediates, so no features_only; it exists for "
                "ViT/DeiT, Mixer, TnT, Swin, MViTv2 and Inception-v4"
            )
        self.output_fmt = check_output_fmt(output_fmt, owner="features_only")
        if out_indices is None:
            out_indices = model.default_out_indices
        if prune:
            out_indices = model.prune_intermediate_layers(out_indices, prune_norm=not norm)
        self.feature_info = FeatureInfo(model.feature_info, out_indices)
        self.out_indices = out_indices if isinstance(out_indices, int) else tuple(out_indices)
        self.norm = norm
        self.model = model

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        indices = self.out_indices if isinstance(self.out_indices, int) else list(self.out_indices)
        with quick_tracer_probes():  # see ClassifierModel.__call__
            return self.model.forward_intermediates(
                x, indices, norm=self.norm, output_fmt=self.output_fmt, intermediates_only=True
            )


def pop_feature_kwargs(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """``create_model``'s features_only keywords taken out of ``kwargs``: the wrapper's
    (out_indices, output_fmt), or None where ``features_only`` is not set."""
    args = {k: kwargs.pop(k) for k in FEATURE_KWARGS if k in kwargs}
    if not args.pop("features_only", False):
        if args:
            raise ConfigError(f"{', '.join(args)} is for features_only=True; pass that too, or leave it out")
        return None
    return args


def features_only(model: nnx.Module, out_indices: Indices = None, output_fmt: str = "NHWC") -> FeatureGetterNet:
    """``model`` as timm's ``features_only`` wraps it (``out_indices`` None: the family's default,
    timm's: the last 3 blocks of a ViT, Mixer, TnT; every stage of Swin, Inception-v4; the last
    4 stages of MViTv2)."""
    wrapped = FeatureGetterNet(model, out_indices, output_fmt=output_fmt)
    if hasattr(model, "pretrained_cfg"):
        wrapped.pretrained_cfg = model.pretrained_cfg
    return wrapped
