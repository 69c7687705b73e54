"""The attention dispatch (jaxvit/layers/attention.py): the padded, length-masked path that the
fused GPU kernel takes gives the unpadded result for every family, on the CPU, in fp32; the
head-major path (CPU's default) gives XLA's logits and gradients for every family."""

import importlib

import jax
import numpy as np
import pytest
from conftest import compiled_forward
from flax import nnx

import jaxvit
from jaxvit.errors import ConfigError

# the module (jaxvit.layers re-exports the function under the same name)
attn = importlib.import_module("jaxvit.layers.attention")

# Each family at a tiny size that still exercises its attention: class/distillation tokens (ViT,
# DeiT), inner and outer attention (TnT), cross attention with q and k of different lengths and
# self attention (Perceiver, Perceiver IO's decoder), shifted windows with relative-position bias
# and the shift mask (Swin: 8x8 map, window 4, two blocks per stage), pooled attention with
# decomposed relative positions and a class token (MViTv2).
FAMILIES = {
    "vit": ("vit_tiny_patch16_224", dict(depth=1, embed_dim=32, num_heads=2, img_size=16, patch_size=4)),
    "deit_distilled": ("deit_tiny_distilled_patch16_224",
                       dict(depth=1, embed_dim=32, num_heads=2, img_size=16, patch_size=4)),
    "tnt": ("tnt_s_patch16_224", dict(depth=1, embed_dim=32, inner_dim=8, num_heads_outer=2,
                                      num_heads_inner=2, img_size=16, patch_size=4)),
    "perceiver": ("perceiver_tiny", dict(depth=1, num_latents=8, latent_dim=16, latent_heads=2,
                                         latent_dim_head=8, cross_dim_head=8, img_size=16)),
    "perceiver_io": ("perceiver_io_tiny", dict(img_size=16)),
    "swin": ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                                                   window_size=4, img_size=32)),
    "mvitv2_cls": ("mvitv2_small_cls", dict(embed_dim=16, depths=(1, 2, 1, 1), num_heads=(1, 2, 4, 8),
                                            img_size=32)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_padded_masked_attention_equals_unpadded(family):
    name, kwargs = FAMILIES[family]
    model = jaxvit.create_model(name, num_classes=5, seed=1, **kwargs)
    model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    size = kwargs["img_size"]
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    def forward(impl):  # one jit per kernel: the kernel is chosen when the forward is traced
        with attn.implementation(impl):
            return np.asarray(compiled_forward(model)(x))

    plain, padded = forward("xla"), forward("xla_padded")
    assert plain.shape == (2, 5)
    # Padded keys get exactly zero weight (masked logits at finfo.min underflow to 0 in exp); what
    # remains is the reduction order over the longer key axis: max |diff| measured over 3 seeds per
    # family (fp32, CPU, jax 0.10.2) from 7e-9 (Swin) to 2.7e-7 (MViTv2); 1e-6 is the bound.
    np.testing.assert_allclose(padded, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_head_major_equals_xla_logits_and_gradients(family):
    """The CPU default moves the heads ahead of the tokens before the products; the logits and
    every parameter's gradient are XLA's attention's, in every family's setting (biases, masks,
    cross attention, pooled keys)."""
    name, kwargs = FAMILIES[family]
    model = jaxvit.create_model(name, num_classes=5, seed=1, **kwargs)
    model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    size = kwargs["img_size"]
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    def run(impl):
        def forward(p, x):
            return nnx.merge(graph, p, rest)(x)

        def loss(p, x):
            logits = forward(p, x)
            return (logits**2).sum(), logits

        with attn.implementation(impl):  # one program for both: one compile
            grads, logits = jax.jit(jax.grad(loss, has_aux=True))(params, x)
        return np.asarray(logits), [np.asarray(g) for g in jax.tree.leaves(grads)]

    (logits, grads), (hm_logits, hm_grads) = run("xla"), run("head_major")
    # fp32 rounding of the same sums in another order. Measured over 3 seeds per family (CPU,
    # jax 0.10.2): logits up to 2.7e-7 (MViTv2; 0 to 2.2e-8 elsewhere); the largest gradient
    # difference up to 1.5e-6 of the model's largest gradient (MViTv2; 3e-8 to 2.7e-7 elsewhere).
    np.testing.assert_allclose(hm_logits, logits, rtol=0, atol=1e-6)
    top = max(np.abs(g).max() for g in grads)
    assert top > 0
    worst = max(np.abs(a - b).max() for a, b in zip(hm_grads, grads))
    assert worst <= 1e-5 * top, (worst, top)


def test_head_major_bias_and_mask_as_jax_applies_them():
    """A bias and a boolean mask, each broadcast over some axes, with q and k of different lengths:
    the head-major path adds and masks as jax.nn.dot_product_attention does."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 5, 2, 8)).astype(np.float32)
    k, v = (rng.standard_normal((2, 7, 2, 8)).astype(np.float32) for _ in range(2))
    bias = rng.standard_normal((1, 2, 5, 7)).astype(np.float32)
    mask = rng.random((2, 1, 5, 7)) > 0.3
    mask[..., 0] = True
    ref = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, implementation="xla")
    out = attn._head_major(q, k, v, bias, mask, None)
    # measured max |diff| 0 here (fp32, CPU, jax 0.10.2); 1e-6 as for the other paths
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-6)
    # the mask matters: without it the result moves
    assert not np.allclose(np.asarray(attn._head_major(q, k, v, bias, None, None)), np.asarray(ref), atol=1e-3)


def test_cpu_default_is_head_major():
    """'auto' on this CPU traces the head-major products (batched over batch and heads), not
    jax.nn.dot_product_attention's token-major einsum."""
    q = np.zeros((2, 5, 3, 8), np.float32)

    def products(impl):
        with attn.implementation(impl):
            jaxpr = jax.make_jaxpr(lambda q: attn.attention(q, q, q))(q)
        return [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]

    if jax.default_backend() != "cpu":  # a GPU host running the suite: 'auto' is cuDNN/XLA there
        pytest.skip(f"'auto' is head-major where jax's default backend is the CPU; here it is {jax.default_backend()}")
    auto, head_major = products("auto"), products("head_major")
    assert len(auto) == 2
    # the same two products with the same operand shapes: (batch, heads) leading
    assert [[v.aval.shape for v in e.invars] for e in auto] == [[v.aval.shape for v in e.invars] for e in head_major]
    assert auto[0].invars[0].aval.shape == (2, 3, 5, 8)


def test_padding_really_pads_and_masks():
    """A key length off the multiple is padded (the masked keys would change the result if the
    lengths were not passed), and the bias and mask are padded with it."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 5, 2, 8)).astype(np.float32)
    k = rng.standard_normal((2, 7, 2, 8)).astype(np.float32)
    v = rng.standard_normal((2, 7, 2, 8)).astype(np.float32)
    bias = rng.standard_normal((1, 2, 5, 7)).astype(np.float32)
    mask = rng.random((2, 1, 5, 7)) > 0.3
    mask[..., 0] = True
    ref = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, implementation="xla")
    out = attn._padded(q, k, v, bias, mask, "xla")
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-6)
    # without the lengths, the zero-padded keys take weight: the masking is what makes it exact
    pad = attn._round_up(7)
    k_pad = np.pad(k, ((0, 0), (0, pad - 7), (0, 0), (0, 0)))
    v_pad = np.pad(v, ((0, 0), (0, pad - 7), (0, 0), (0, 0))) + 1.0
    leaky = jax.nn.dot_product_attention(q, k_pad, v_pad, implementation="xla")
    masked = jax.nn.dot_product_attention(q, k_pad, v_pad, key_value_seq_lengths=np.full((2,), 7, np.int32),
                                          implementation="xla")
    assert not np.allclose(np.asarray(leaky), np.asarray(masked), atol=1e-3)




def test_pad_multiple_sets_the_padded_length():
    """bench.py --pad-multiple: cuDNN's inputs padded to another multiple (2: an even length, all
    that jax asks of biased attention), still masked to the unpadded result."""
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((2, 49, 2, 8)).astype(np.float32) for _ in range(3))
    bias = rng.standard_normal((1, 2, 49, 49)).astype(np.float32)
    ref = jax.nn.dot_product_attention(q, k, v, bias=bias, implementation="xla")
    for multiple, length in ((2, 50), (attn.PAD_MULTIPLE, 64)):
        with attn.pad_multiple(multiple):
            jaxpr = jax.make_jaxpr(lambda q, k, v, b: attn._padded(q, k, v, b, None, "xla"))(q, k, v, bias)
            out = attn._padded(q, k, v, bias, None, "xla")
        shapes = {v.aval.shape for e in jaxpr.eqns for v in e.outvars}
        assert (2, length, 2, 8) in shapes and (1, 2, length, length) in shapes, shapes  # q/k/v and the bias
        # the same reduction over a few more, masked keys: measured bitwise equal (5 seeds, fp32, CPU)
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-6)
    assert attn._round_up(49) == 64  # the context restored the default
    with pytest.raises(ConfigError, match="pad multiple 0"):
        attn.set_pad_multiple(0)


@pytest.mark.parametrize("width", [6, 12])
def test_padded_path_widens_narrow_heads_to_cudnns_multiple(width):
    """Heads narrower than a multiple of 8 (TnT-S's inner heads: 6) reach the kernel padded to it
    with zero columns, and the result and its gradients are the unpadded ones (scale of the true
    width, the extra output columns dropped)."""
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 16, 3, width)).astype(np.float32)
    k = rng.standard_normal((2, 20, 3, width)).astype(np.float32)
    v = rng.standard_normal((2, 20, 3, width)).astype(np.float32)
    bias = rng.standard_normal((1, 3, 16, 20)).astype(np.float32)
    padded_width = -(-width // 8) * 8
    jaxpr = jax.make_jaxpr(lambda q, k, v: attn._padded(q, k, v, bias, None, "xla"))(q, k, v)
    assert any(x.aval.shape[-1:] == (padded_width,) for e in jaxpr.jaxpr.eqns for x in e.outvars)

    def run(impl, q, k, v):
        with attn.implementation(impl):
            return attn.attention(q, k, v, bias=bias)

    ref, out = run("xla", q, k, v), run("xla_padded", q, k, v)
    assert out.shape == ref.shape == (2, 16, 3, width)
    # fp32, CPU, 4 seeds x both widths: max |diff| measured 6.0e-7 on outputs up to 2.6 (the key
    # axis padded 20 -> 64 sums in another order), gradients 5.4e-7 of each one's largest value;
    # held to 1e-6 (outputs) and 2e-6 (gradients) of the largest value
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-6 * float(np.abs(ref).max()))
    grads = [jax.grad(lambda *t, impl=impl: run(impl, *t).sum() ** 2, argnums=(0, 1, 2))(q, k, v)
             for impl in ("xla", "xla_padded")]
    for a, b in zip(*grads):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=2e-6 * float(np.abs(a).max()))


def test_unknown_implementation_is_a_config_error():
    with pytest.raises(ConfigError, match="not one of"):
        attn.set_implementation("flash")
    assert attn.get_implementation() == "auto"


@pytest.mark.parametrize("impl", ["xla", "xla_padded", "head_major"])
@pytest.mark.parametrize("v_width", [16, 4])
def test_v_of_another_head_width(impl, v_width):
    """v's heads twice as wide as q's (differential attention) or narrower: the kernels get one
    width (zero columns), the scale stays q's, and the result is the explicit softmax's."""
    rng = np.random.default_rng(2)
    q, k = (rng.standard_normal((2, 5, 3, 8)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((2, 5, 3, v_width)).astype(np.float32)
    weights = jax.nn.softmax(np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8), axis=-1)
    ref = np.einsum("bhqk,bkhd->bqhd", weights, v)
    with attn.implementation(impl):
        out = attn.attention(q, k, v)
    assert out.shape == ref.shape
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-6)
