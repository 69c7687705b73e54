"""What every model family shares: ``__call__``, the input cast, and timm's classifier interface.

A family subclasses ``ClassifierModel``, sets ``pool_types`` (the ``global_pool`` values it
takes; empty where its pooling is fixed) and writes ``forward_features``, ``forward_head``,
``get_classifier`` and ``_reset_head``; the classifier itself is built from
``jaxvit.layers.classifier``.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from jaxvit._compat import quick_tracer_probes
from jaxvit.layers.classifier import check_pool


class ClassifierModel(nnx.Module):
    pool_types: tuple[str, ...] = ()

    def __call__(self, x: jax.Array) -> jax.Array:
        with quick_tracer_probes():  # traced train-mode forwards: linear, not quadratic, in the layers
            return self.forward_head(self.forward_features(x))

    def cast_input(self, x: jax.Array) -> jax.Array:
        """Images in the compute dtype (params stay float32)."""
        return x if self.dtype is None else x.astype(self.dtype)

    def checked_pool(self, global_pool: str) -> str:
        if not self.pool_types:
            raise ValueError(f"{type(self).__name__} pools in one fixed way; global_pool cannot be set")
        return check_pool(global_pool, self.pool_types, type(self).__name__)

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, *, rngs: nnx.Rngs | None = None
    ) -> None:
        """timm's ``reset_classifier``: a new classifier for ``num_classes`` (0: none, the
        model returns pooled features), optionally with another ``global_pool``."""
        if global_pool is not None:
            self.global_pool = self.checked_pool(global_pool)
        self.num_classes = num_classes
        self._reset_head(num_classes, rngs or nnx.Rngs(0))

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        raise NotImplementedError


def param_count(model_or_state, kind=nnx.Param) -> int:
    """Elements of a model's ``kind`` variables (params by default; a tied tensor once, as
    torch's ``model.parameters()`` counts), or of a state / pure-dict tree. Abstract models
    (``jaxvit.abstract_model``) count the same, without any weight being made."""
    tree = nnx.state(model_or_state, kind) if isinstance(model_or_state, nnx.Module) else model_or_state
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
