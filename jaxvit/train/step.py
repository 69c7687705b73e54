"""Pure train and eval steps, and their two parallel forms.

``train_step(state, batch) -> (state, metrics)`` is a pure function of the
params, optimizer state and batch (the model's graph is closed over). It is
jitted once over a Mesh with NamedShardings (pjit style), or wrapped in
``jax.pmap`` with an explicit gradient ``pmean``; both give the same numbers.

Images that crossed to the device as uint8 (``transfer_dtype='uint8'``) are normalized
first, in both steps (``normalize_on_device``). With ``mixup`` the global batch is then
mixed (soft targets, timm's SoftTargetCrossEntropy); with ``model_ema`` the state's
``ema_params`` and ``ema_batch_stats`` follow the model after every update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxvit.data.mix import MIX_STREAM, Mixup, mix_global_batch
from jaxvit.train.ema import ModelEma
from jaxvit.train.optim import cross_entropy, soft_target_cross_entropy

State = dict[str, Any]  # {'step', 'params', 'batch_stats', 'opt_state', 'rng'} (+ 'ema_params', ...)


def normalize_on_device(images: jax.Array, mean, std) -> jax.Array:
    """uint8 images (0..255) normalized as the host would have done it, in float32: (x / 255 - mean) / std,
    timm's ToTensor + Normalize, before mixup (affine, so mixing after it is timm's order) and the model.
    Float images were normalized on the host and pass unchanged."""
    if images.dtype != jnp.uint8:
        return images
    if mean is None or std is None:
        raise ValueError("uint8 images need the step's mean and std (config.mean, config.std) to be normalized")
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def make_train_step(
    graphdef: nnx.GraphDef,
    rest: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    num_classes: int,
    label_smoothing: float,
    grad_accum_steps: int = 1,
    axis_name: str | None = None,
    *,
    mixup: Mixup | None = None,
    model_ema: ModelEma | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Callable[[State, dict], tuple[State, dict]]:
    """The per-step update. With ``axis_name`` (pmap), gradients and metrics are averaged over it.
    uint8 images are normalized with ``mean`` and ``std`` first (``normalize_on_device``).

    With ``grad_accum_steps`` k > 1 the batch is taken as k micro-batches (every
    k-th example, so each spans all devices) whose mean gradient is one update:
    the large-batch update, in 1/k of the activation memory.
    """

    def loss_fn(params, batch_stats, batch, key):
        model = nnx.merge(graphdef, params, batch_stats, rest)
        nnx.reseed(model, dropout=key)
        logits = model(batch["image"])
        labels = batch["label"]
        if labels.ndim == 2:  # mixed: soft targets; accuracy against their argmax
            loss = soft_target_cross_entropy(logits, labels).mean()
            labels = jnp.argmax(labels, -1)
        else:
            loss = cross_entropy(logits, labels, num_classes, label_smoothing).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
        # BatchNorm's running statistics, updated by this forward (over the global batch)
        return loss, (accuracy, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def accumulated(params, batch_stats, batch, key):
        k = grad_accum_steps
        micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)

        def body(carry, xs):
            grads, loss, acc, stats = carry
            i, mb = xs
            (mb_loss, (a, stats)), g = grad_fn(params, stats, mb, jax.random.fold_in(key, i))
            return (jax.tree.map(jnp.add, grads, g), loss + mb_loss, acc + a, stats), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), batch_stats)
        (grads, loss, acc, stats), _ = jax.lax.scan(body, init, (jnp.arange(k), micro))
        return (loss / k, (acc / k, stats)), jax.tree.map(lambda g: g / k, grads)

    def train_step(state: State, batch: dict) -> tuple[State, dict]:
        key = jax.random.fold_in(state["rng"], state["step"])
        batch = dict(batch, image=normalize_on_device(batch["image"], mean, std))
        if mixup is not None:  # the same key on every device: one mix of the global batch
            batch = mix_global_batch(mixup, jax.random.fold_in(key, MIX_STREAM), batch, axis_name)
        if axis_name is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        fn = grad_fn if grad_accum_steps == 1 else accumulated
        (loss, (accuracy, batch_stats)), grads = fn(state["params"], state["batch_stats"], batch, key)
        if axis_name is not None:
            grads, loss, accuracy = jax.lax.pmean((grads, loss, accuracy), axis_name)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(
            loss=loss, accuracy=accuracy, grad_norm=optax.tree.norm(grads), lr=schedule(state["step"])
        )
        new_state = dict(
            state, step=state["step"] + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
        if model_ema is not None:  # timm: model_ema.update(model, step=num_updates)
            for name, now in (("ema_params", params), ("ema_batch_stats", batch_stats)):
                new_state[name] = model_ema.update(state[name], now, new_state["step"])
        return new_state, metrics

    return train_step


def make_eval_step(
    graphdef: nnx.GraphDef, rest: Any, num_classes: int, axis_name: str | None = None, *,
    mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
) -> Callable[[Any, dict], dict]:
    """Sums over the (masked) batch: loss, top-1 and top-5 hits, example count (uint8 images are
    normalized with ``mean`` and ``std`` first)."""

    def eval_step(params, batch_stats, batch: dict) -> dict:
        model = nnx.merge(graphdef, params, batch_stats, rest)
        logits = model(normalize_on_device(batch["image"], mean, std))
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
