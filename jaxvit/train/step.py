"""Pure train and eval steps, and their two parallel forms.

``train_step(state, batch) -> (state, metrics)`` is a pure function of the
params, optimizer state and batch (the model's graph is closed over). It is
jitted once over a Mesh with NamedShardings (pjit style), or wrapped in
``jax.pmap`` with an explicit gradient ``pmean``; both give the same numbers.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxvit.train.optim import cross_entropy

State = dict[str, Any]  # {'step', 'params', 'batch_stats', 'opt_state', 'rng'}


def make_train_step(
    graphdef: nnx.GraphDef,
    rest: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    num_classes: int,
    label_smoothing: float,
    axis_name: str | None = None,
) -> Callable[[State, dict], tuple[State, dict]]:
    """The per-step update. With ``axis_name`` (pmap), gradients and metrics are averaged over it."""

    def loss_fn(params, batch_stats, batch, key):
        model = nnx.merge(graphdef, params, batch_stats, rest)
        nnx.reseed(model, dropout=key)
        logits = model(batch["image"])
        loss = cross_entropy(logits, batch["label"], num_classes, label_smoothing).mean()
        # BatchNorm's running statistics, updated by this forward (over the global batch)
        return loss, (logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

    def train_step(state: State, batch: dict) -> tuple[State, dict]:
        key = jax.random.fold_in(state["rng"], state["step"])
        if axis_name is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["batch_stats"], batch, key
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        if axis_name is not None:
            grads, loss, accuracy = jax.lax.pmean((grads, loss, accuracy), axis_name)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(
            loss=loss, accuracy=accuracy, grad_norm=optax.global_norm(grads), lr=schedule(state["step"])
        )
        new_state = dict(
            state, step=state["step"] + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
        return new_state, metrics

    return train_step


def make_eval_step(
    graphdef: nnx.GraphDef, rest: Any, num_classes: int, axis_name: str | None = None
) -> Callable[[Any, dict], dict]:
    """Sums over the (masked) batch: loss, top-1 and top-5 hits, example count."""

    def eval_step(params, batch_stats, batch: dict) -> dict:
        model = nnx.merge(graphdef, params, batch_stats, rest)
        logits = model(batch["image"])
        mask = batch["mask"]
        labels = batch["label"]
        loss = cross_entropy(logits, labels, num_classes)
        k = min(5, num_classes)
        topk = jax.lax.top_k(logits, k)[1]
        hits = topk == labels[:, None]
        sums = dict(
            loss=jnp.sum(loss * mask),
            top1=jnp.sum(hits[:, 0] * mask),
            top5=jnp.sum(jnp.any(hits, -1) * mask),
            count=jnp.sum(mask),
        )
        if axis_name is not None:
            sums = jax.lax.psum(sums, axis_name)
        return sums

    return eval_step
