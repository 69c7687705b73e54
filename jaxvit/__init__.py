"""jaxvit: timm's vision transformers in JAX/Flax NNX, and a trainer for them."""

from __future__ import annotations

from typing import Any

from jaxvit import models as _models  # noqa: F401  (registers the model names)
from jaxvit.models.features import features_only, pop_feature_kwargs
from jaxvit.registry import get_entry, list_models, split_name

__version__ = "0.1.0"


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    checkpoint: str | None = None,
    ema: bool = False,
    strict: bool = True,
    num_classes: int | None = None,
    dtype: Any = None,
    seed: int = 0,
    **kwargs: Any,
):
    """Builds a model by timm name, e.g. ``create_model("vit_tiny_patch16_224", num_classes=10)``.

    ``dtype`` is the compute dtype (``"bfloat16"`` on GPU/TPU); params stay float32.
    ``checkpoint`` loads a jaxvit checkpoint directory (as written by ``python -m convert``,
    a train workdir, or its ``best/``; ``ema=True``: its EMA weights); keywords not passed
    (num_classes, img_size, patch_size, ...) default to the ones it was made with. Another
    ``num_classes`` re-initializes the classifier and another ``img_size`` resamples the
    position table, as timm's pretrained loading does; any other difference is an error unless
    ``strict=False`` (then what matches is loaded and the rest listed). jaxvit never downloads
    weights: ``pretrained=True`` points at the converter instead.

    ``features_only=True`` (ViT/DeiT, Mixer, TnT, Swin, MViTv2, Inception-v4) returns timm's feature extractor:
    calling it gives the list of the feature maps ``out_indices`` names (default: the family's,
    as timm's), NHWC unless ``output_fmt='NCHW'`` (timm's layout) or 'NLC'; ``.feature_info``
    has their ``channels()`` and ``reduction()`` (``jaxvit.models.features``).
    """
    entry = get_entry(name)
    feature_args = pop_feature_kwargs(kwargs)  # features_only=True, out_indices, output_fmt
    if pretrained and checkpoint is None:
        raise ValueError(
            f"jaxvit does not download weights. Convert timm's weights once with "
            f"`python -m convert --model {name} --checkpoint FILE --out DIR`, then pass checkpoint=DIR"
        )
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    written_with: dict = {}
    if checkpoint is not None:
        from jaxvit import weights

        written_with = weights.read_model_meta(checkpoint).get("kwargs") or {}
        for key, value in written_with.items():
            kwargs.setdefault(key, value)
    if dtype is not None:
        import jax.numpy as jnp

        kwargs["dtype"] = jnp.dtype(dtype)

    def make():
        model = entry.fn(seed=seed, **kwargs)
        model.pretrained_cfg = dict(entry.default_cfg, architecture=entry.name, tag=split_name(name)[1])
        return model

    if checkpoint is None:
        model = make()
        return model if feature_args is None else features_only(model, **feature_args)
    # A strict load of the checkpoint's own classes overwrites every weight: they are not drawn
    # at random first (jaxvit._compat.without_weights; ViT-L/16 skips 304M numbers and each
    # family its initializer compiles). Any other load keeps some tensors at their init.
    fills_all = strict and "num_classes" in written_with and kwargs["num_classes"] == written_with["num_classes"]
    if fills_all:
        from jaxvit._compat import without_weights

        model = without_weights(make)
    else:
        model = make()
    report, _ = weights.load_checkpoint(
        model, checkpoint, ema=ema, strict=strict, asked=weights.describe(name, kwargs),
        fix=f"leave out the keywords that change shapes (the checkpoint's are the default), "
            f"or create_model({name!r}, checkpoint=..., strict=False) to load what matches",
    )
    if fills_all and report.kept_at_init:  # e.g. a head the checkpoint was written without
        model = make()
        weights.load_checkpoint(model, checkpoint, ema=ema, strict=strict, log_fn=lambda _: None)
    return model if feature_args is None else features_only(model, **feature_args)


def abstract_model(name: str, **kwargs: Any):
    """``create_model(name, **kwargs)`` as shapes and dtypes only (``nnx.eval_shape``): nothing
    is initialized or computed, so a ViT-L costs what a ViT-Ti does. For parameter counts,
    conversion plans, and sharding before the real state is made."""
    from jaxvit._compat import eval_shape

    return eval_shape(lambda: create_model(name, **kwargs))


__all__ = ["abstract_model", "create_model", "list_models"]
