"""Per-block rematerialization (jaxvit/layers/remat.py, ``config.remat``): the same loss, gradients
and BatchNorm statistics as without it, for every family, and less memory for the step."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import filled_model, tiny_models
from flax import nnx

import jaxvit
from jaxvit._compat import kept_bytes, quick_tracer_probes
from jaxvit.errors import ConfigError
from jaxvit.layers import remat


def _grad_fn(model, features_only: bool = False):
    """jit(loss, grads, new BatchNorm stats) of a train-mode forward (of ``forward_features``
    where ``features_only``); traced under the remat policy that is set when it is first called."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)  # as the train step holds them

    def loss(params, rest, x):
        m = nnx.merge(graph, params, rest)
        with quick_tracer_probes():  # as model(x) traces: see jaxvit/_compat.py
            out = m.forward_features(x) if features_only else m(x)
        return jnp.mean(out.astype(jnp.float32) ** 2), nnx.state(m, nnx.BatchStat)

    f = jax.jit(jax.value_and_grad(loss, has_aux=True))
    return lambda x: f(params, rest, x)


# one name per family: every block loop that goes through block_call (Inception-v4: its features,
# the first INCEPTION_FEATURES of them: its stem, Mixed-3a/4a/5a and an Inception-A block hold
# every kind of layer (conv, BatchNorm, pooling, branches); the whole net's grad compiled twice
# was 150-170 s of the suite)
ONE_PER_FAMILY = ["vit_tiny_patch16_224", "mixer_s16_224", "swin_tiny_patch4_window7_224", "tnt_s_patch16_224",
                  "mvitv2_tiny", "perceiver_tiny", "perceiver_io_tiny", "dems_tiny_patch2_32", "mvit2_tiny_patch2",
                  "inception_v4"]
INCEPTION_FEATURES = 7
# Mixer's classifier starts at zero (timm's init): its logits, loss and every gradient would be
# 0 and compare equal whatever remat did; its features are compared instead.
FEATURES_ONLY = ("inception_v4", "mixer_s16_224")


# the families whose blocks run a norm or an activation into a Linear through remat.chain
# (Mlp, Attention, Perceiver's): 'elementwise' changes nothing in Inception-v4 (convolutions,
# BatchNorm)
CHAINED = [n for n in ONE_PER_FAMILY if n != "inception_v4"]


@pytest.mark.parametrize("policy,name", [("block", n) for n in ONE_PER_FAMILY] + [("elementwise", n) for n in CHAINED])
def test_remat_gives_the_same_numbers(policy, name):
    kwargs = tiny_models()[name]
    model = filled_model(name, seed=1, num_classes=5, **kwargs)  # the init is not what is tested
    features_only = name in FEATURES_ONLY
    if name == "inception_v4":
        model.features = nnx.List(list(model.features)[:INCEPTION_FEATURES])
    size = kwargs["img_size"]
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    with remat.policy("none"):
        (loss0, stats0), grads0 = _grad_fn(model, features_only)(x)
    with remat.policy(policy):
        fn = _grad_fn(model, features_only)
        (loss1, stats1), grads1 = fn(x)
        jaxpr = jax.make_jaxpr(lambda x: fn(x))(x)
    # every block of the loop rematerialized ('block'), or every chain ('elementwise'): one barrier
    # each in the backward pass
    n_blocks = INCEPTION_FEATURES if name == "inception_v4" and policy == "block" else None
    barriers = str(jaxpr).count("optimization_barrier")
    assert barriers >= 1 and (n_blocks is None or barriers == n_blocks), barriers
    if policy == "elementwise" and name == "mvitv2_tiny":
        # each block's three chains (norm1 into qkv, norm2 into fc1, GELU into fc2), and one more
        # for each shortcut projected from a norm's output
        blocks = [b for stage in model.stages for b in stage.blocks]
        projected = sum((b.shortcut_proj_attn is not None) + (b.shortcut_proj_mlp is not None) for b in blocks)
        assert projected and barriers == 3 * len(blocks) + projected, (barriers, len(blocks), projected)
    # The recomputed forward is the same program on the same inputs: measured bitwise equal for
    # every family under 'block' (fp32, CPU, jax 0.10.2); under 'elementwise' the losses equal and
    # the gradients within 5e-8 (Mixer over 3 seeds; DEMS-ViT 3e-8, Perceiver 1.5e-8, the others 0
    # to 1.2e-8), XLA fusing the recomputed norms and activations into other kernels, except
    # MViTv2-T since its norm1 into qkv is chained (e635d1b): up to 9.5e-7 on gradients of order
    # 1 (its qkv and pool_q kernels), 0.44 of the tolerance below at worst over 3 seeds.
    moved = [bool(np.any(g != 0)) for g in jax.tree.leaves(grads0)]  # an unused head's stay 0
    assert loss0 > 0 and sum(moved) > len(moved) // 2, "nothing to compare"
    np.testing.assert_allclose(loss1, loss0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(stats1), jax.tree.leaves(stats0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_elementwise_on_the_padded_attention_path():
    """Under 'elementwise' attention's proj keeps the kernel's own output and cuts its padding
    again in the backward pass (``attention_uncut``): on the padded path the GPU's fused kernel
    takes (here with XLA's arithmetic), the same numbers as without remat."""
    kwargs = dict(img_size=16, patch_size=4, depth=2, embed_dim=32, num_heads=2)  # 17 tokens, padded to 64
    model = filled_model("vit_tiny_patch16_224", seed=1, num_classes=5, **kwargs)
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype(np.float32)
    with jaxvit.layers.attention_impl.implementation("xla_padded"):
        with remat.policy("none"):
            (loss0, _), grads0 = _grad_fn(model)(x)
        with remat.policy("elementwise"):
            (loss1, _), grads1 = _grad_fn(model)(x)
    # measured over 3 seeds: losses equal, gradients within 6e-8 (fp32, CPU)
    np.testing.assert_allclose(loss1, loss0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_keeps_fewer_activations():
    """What autodiff keeps from the forward for the backward (the residuals: the leaves of
    ``jax.vjp``'s function) for a 4-block ViT at batch 32 (65 tokens of width 64, float32).
    Measured (jax 0.10.2, at 5ccce17): 43.8 MiB without remat, 4.9 MiB under 'block' (each block's input
    only), 31.5 MiB under 'elementwise': per block, the two norms' outputs (one token array each)
    and GELU's output (four: the MLP is 4x wide) are no longer kept, 6 x 0.51 MiB a block, nor
    the norms' statistics.
    XLA:CPU's compiled temporaries do not show the saving (its scheduler is not memory-driven);
    the GPU figure is bench.py's peak GB with --remat."""
    depth, batch, tokens, width = 4, 32, 65, 64
    model = jaxvit.create_model("vit_tiny_patch16_224", num_classes=5, img_size=64, patch_size=8, depth=depth,
                                embed_dim=width, num_heads=2)
    x = jax.ShapeDtypeStruct((batch, 64, 64, 3), jnp.float32)
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def loss(params, x):
        return jnp.mean(nnx.merge(graph, params, rest)(x) ** 2)

    kept = {}
    for policy in remat.POLICIES:
        with remat.policy(policy):
            residuals = jax.eval_shape(lambda p, x: jax.tree.leaves(jax.vjp(loss, p, x)[1]), params, x)
        kept[policy] = sum(math.prod(a.shape) * a.dtype.itemsize for a in residuals)
    assert kept["block"] < 0.2 * kept["none"], kept
    token_array = batch * tokens * width * 4
    # (and the norms' per-token statistics, which the recomputation makes again)
    assert kept["none"] - kept["elementwise"] >= depth * 6 * token_array, kept


def test_normed_each_keeps_one_norm_output_or_none():
    """One norm into two Linears (MViTv2's branch and projected shortcut, Perceiver's to_q and
    to_kv): under 'none' the norm's output is kept once for both weight gradients; under
    'elementwise' not at all (each Linear's chain recomputes it), only x and the parameters."""
    from jaxvit.layers.common import layer_norm, linear

    kw = dict(dtype=None, rngs=nnx.Rngs(0))
    norm, a, b = layer_norm(16, **kw), linear(16, 32, **kw), linear(16, 8, **kw)
    graph, params = nnx.split(nnx.List([norm, a, b]))
    x = jnp.ones((4, 10, 16))

    def loss(params, x):
        n, a, b = nnx.merge(graph, params)
        ya, yb = remat.normed_each(n, x, a, b)
        return jnp.sum(ya**2) + jnp.sum(yb**2)

    kept = {}
    for policy in ("none", "elementwise"):
        with remat.policy(policy):
            kept[policy] = kept_bytes(loss, params, x)
    # the outputs' own residuals (for the squares) are kept either way: 4 x 10 x (32 + 8) floats
    outputs = 4 * 10 * (32 + 8) * 4
    assert kept["elementwise"] == outputs, kept
    assert kept["none"] >= outputs + x.size * 4, kept  # and the norm's output, once


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="remat 'layer' is not one of"):
        remat.set_policy("layer")
    assert remat.get_policy() == "none"
