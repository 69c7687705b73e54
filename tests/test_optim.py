"""Schedules, weight-decay groups and losses."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

import jaxvit
from jaxvit.train import optim


def cfg(**kw):
    c = ml_collections.ConfigDict(dict(
        lr=1e-3, min_lr=1e-5, warmup_lr=1e-6, warmup_epochs=0.0, warmup_steps=10, schedule="cosine",
        decay_epochs=0.0, decay_steps=30, decay_rate=0.1, optimizer="adamw", b1=0.9, b2=0.999,
        eps=1e-8, momentum=0.9, nesterov=False, weight_decay=0.05, filter_bias_and_bn=True,
        grad_clip_norm=0.0,
    ))
    c.update(kw)
    return c


def test_warmup_cosine_endpoints():
    fn = optim.create_learning_rate_fn(cfg(), steps_per_epoch=10, total_steps=100)
    assert fn(0) == pytest.approx(1e-6, rel=1e-4)
    assert fn(5) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2, rel=1e-5)
    assert fn(10) == pytest.approx(1e-3, rel=1e-5)
    assert fn(55) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5, rel=1e-4)  # half-way down
    assert fn(100) == pytest.approx(1e-5, rel=1e-4)


def test_step_and_constant_schedules():
    step = optim.create_learning_rate_fn(cfg(schedule="step", warmup_steps=0), 10, 100)
    assert [float(step(s)) for s in (0, 29, 30, 60)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5], rel=1e-5)
    const = optim.create_learning_rate_fn(cfg(schedule="constant"), 10, 100)
    assert float(const(50)) == pytest.approx(1e-3, rel=1e-6)
    with pytest.raises(ValueError, match="one of"):
        optim.create_learning_rate_fn(cfg(schedule="cosin"), 10, 100)


def test_no_decay_for_bias_norm_and_tokens():
    m = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8, depth=1)
    params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
    mask = optim.decay_mask(params, m.no_weight_decay())
    assert mask["blocks"][0]["attn"]["qkv"]["kernel"] and mask["head"]["kernel"]
    assert mask["patch_embed"]["proj"]["kernel"]
    assert not mask["blocks"][0]["attn"]["qkv"]["bias"] and not mask["norm"]["scale"]
    assert not mask["pos_embed"] and not mask["cls_token"]


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_weight_decay_only_where_masked(name):
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    zero = jax.tree.map(jnp.zeros_like, params)
    tx = optim.create_optimizer(cfg(optimizer=name, lr=0.1), optax.constant_schedule(0.1), params)
    updates, _ = tx.update(zero, tx.init(params), params)
    assert float(jnp.abs(updates["b"]).max()) == 0.0  # zero gradient, no decay on 1-d
    assert float(jnp.abs(updates["w"]).max()) > 0.0


def test_sgd_nesterov_matches_torch_formula():
    params = {"w": jnp.array([1.0, -2.0])}
    g = {"w": jnp.array([0.5, 0.25])}
    c = cfg(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.0)
    tx = optim.create_optimizer(c, optax.constant_schedule(0.1), params)
    state = tx.init(params)
    buf = np.zeros(2)
    p = np.array([1.0, -2.0])
    for _ in range(3):
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
        buf = 0.9 * buf + np.asarray(g["w"])  # torch: buf = m*buf + g; step = g + m*buf
        p = p - 0.1 * (np.asarray(g["w"]) + 0.9 * buf)
    np.testing.assert_allclose(params["w"], p, rtol=1e-6)


def test_label_smoothing_matches_timm_definition():
    logits = jnp.array([[2.0, 0.5, -1.0]])
    s = 0.1
    logp = jax.nn.log_softmax(logits)
    timm_loss = (1 - s) * -logp[0, 0] + s * -logp[0].mean()
    np.testing.assert_allclose(optim.cross_entropy(logits, jnp.array([0]), 3, s)[0], timm_loss, rtol=1e-6)


def test_grad_clipping():
    params = {"w": jnp.zeros(2)}
    tx = optim.create_optimizer(cfg(optimizer="sgd", momentum=0.0, weight_decay=0.0, grad_clip_norm=1.0),
                                optax.constant_schedule(1.0), params)
    upd, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], [-0.6, -0.8], rtol=1e-6)


def test_grad_accumulation_equals_large_batch():
    from jaxvit.train.step import make_train_step

    m = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=16, patch_size=4,
                            depth=2, embed_dim=32, num_heads=2)
    graph, params, stats, rest = nnx.split(m, nnx.Param, nnx.BatchStat, ...)
    params, stats, rest = map(nnx.to_pure_dict, (params, stats, rest))
    # plain SGD: the update is linear in the gradient, so float rounding is not amplified (Adam's
    # g / sqrt(v) turns 1e-9 differences in near-zero gradients into visible ones)
    sched = optax.constant_schedule(0.1)
    tx = optax.sgd(sched, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = dict(image=jnp.asarray(rng.standard_normal((16, 16, 16, 3), np.float32)),
                 label=jnp.asarray(rng.integers(0, 10, 16), jnp.int32))
    out = {}
    for k in (1, 4):
        state = dict(step=jnp.asarray(0), params=params, batch_stats=stats, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(0))
        step = jax.jit(make_train_step(graph, rest, tx, sched, 10, 0.1, grad_accum_steps=k))
        for _ in range(2):
            state, metrics = step(state, batch)
        out[k] = (state["params"], float(metrics["loss"]))
    assert out[1][1] == pytest.approx(out[4][1], abs=1e-5)
    for a, b in zip(jax.tree.leaves(out[1][0]), jax.tree.leaves(out[4][0])):
        np.testing.assert_allclose(a, b, atol=1e-6)
