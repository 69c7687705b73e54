"""LayerNorm and GELU keep less for the gradient than autodiff of their plain forms, and compute
the same values; Linear merges the input's rows before its product, with the same values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxvit.layers import common


def residual_bytes(fn, *args) -> int:
    """Bytes a gradient of ``fn`` keeps from the forward pass: the arrays ``jax.vjp``'s backward
    function closes over."""
    _, backward = jax.vjp(fn, *args)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(backward))


def norms(dtype, x_dtype):
    ours = common.layer_norm(64, eps=1e-6, dtype=dtype, rngs=nnx.Rngs(0))
    ours.scale[...] = jax.random.normal(jax.random.key(1), (64,))
    ours.bias[...] = jax.random.normal(jax.random.key(2), (64,))
    plain = nnx.LayerNorm(64, epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    plain.scale[...], plain.bias[...] = ours.scale[...], ours.bias[...]
    x = (jax.random.normal(jax.random.key(3), (4, 9, 64)) * 3 + 1).astype(x_dtype)
    return ours, plain, x


@pytest.mark.parametrize("dtype,x_dtype", [(jnp.float32, jnp.float32), (jnp.bfloat16, jnp.float32),
                                           (jnp.bfloat16, jnp.bfloat16)])
def test_layer_norm_is_nnx_layer_norm_with_fewer_residuals(dtype, x_dtype):
    ours, plain, x = norms(dtype, x_dtype)
    assert isinstance(ours, nnx.LayerNorm)  # the same parameters under the same names
    np.testing.assert_array_equal(np.asarray(ours(x), np.float32), np.asarray(plain(x), np.float32))

    def loss(m, x):
        return (m(x).astype(jnp.float32) ** 2).sum()

    ours_grads = jax.tree.leaves(nnx.grad(loss, argnums=(0, 1))(ours, x))
    plain_grads = jax.tree.leaves(nnx.grad(loss, argnums=(0, 1))(plain, x))
    for a, b in zip(ours_grads, plain_grads, strict=True):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        # measured: equal but for the float32 input gradient, 4.8e-7 apart at magnitude 11.5
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())

    def apply(m):
        return lambda x: m(x)

    kept, kept_plain = residual_bytes(apply(ours), x), residual_bytes(apply(plain), x)
    # ours: the input, two per-token statistics and the two parameter vectors
    assert kept <= x.size * x.dtype.itemsize + 2 * 4 * 36 + 2 * 4 * 64, kept
    # the plain form keeps float32 arrays of the input's size (x - mean, x^2, the scaled product)
    assert kept_plain >= kept + 2 * x.size * 4, (kept, kept_plain)


def test_layer_norm_with_a_mask_takes_nnx_path():
    ours, plain, x = norms(jnp.float32, jnp.float32)
    mask = jnp.arange(64) < 40
    np.testing.assert_array_equal(ours(x, mask=mask), plain(x, mask=mask))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gelu_keeps_one_array_and_its_gradient_is_the_exact_one(dtype):
    x = jnp.linspace(-6, 6, 1001).astype(dtype)

    def plain(x):
        return jax.nn.gelu(x, approximate=False)

    np.testing.assert_array_equal(np.asarray(common.gelu(x), np.float32), np.asarray(plain(x), np.float32))
    assert residual_bytes(common.gelu, x) == x.size * x.dtype.itemsize
    assert residual_bytes(plain, x) >= 3 * x.size * x.dtype.itemsize
    exact = jax.vmap(jax.grad(plain))(jnp.linspace(-6, 6, 1001))  # float32 autodiff of the erf form
    ours = np.asarray(jax.vmap(jax.grad(common.gelu))(x), np.float32)
    if dtype == jnp.float32:
        np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-6)  # measured 1.2e-7
    else:
        # bf16: one rounding of the slope (measured 0.0045 from float32's), closer than jax's own
        # bf16 autodiff of the erf form (0.0081)
        theirs = np.asarray(jax.vmap(jax.grad(plain))(x), np.float32)
        assert np.abs(ours - exact).max() < np.abs(theirs - exact).max()
        assert np.abs(ours - exact).max() < 0.008
    # second derivative still traced through the written-out slope: d2/dx2 at 1.0 = phi(1) (2 - 1)
    np.testing.assert_allclose(jax.grad(jax.grad(common.gelu))(1.0), np.exp(-0.5) / np.sqrt(2 * np.pi), rtol=1e-6)


def test_drop_path_keeps_only_its_per_sample_mask():
    """DropPath's gradient keeps the (batch, 1, 1, 1) mask, not the mask broadcast to x's shape
    and an array of zeros as large as x (what autodiff of jnp.where kept), with the same values
    and gradients as that plain form under jit."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 6, 5, 8)), jnp.float32)
    layer = common.DropPath(0.5, rngs=nnx.Rngs(dropout=0))
    graph, state = nnx.split(layer)
    state = nnx.to_pure_dict(state)  # merged afresh in each trace
    mask = jax.random.bernoulli(nnx.merge(graph, state).rngs(), 0.5, (4, 1, 1, 1))
    assert 0 < int(mask.sum()) < 4, "draw both a kept and a dropped sample"

    def ours(x):
        return nnx.merge(graph, state)(x)  # the same stream: the same mask

    def plain(x):
        return jnp.where(mask, x / 0.5, jnp.zeros_like(x))

    np.testing.assert_array_equal(jax.jit(ours)(x), jax.jit(plain)(x))
    weights = jnp.linspace(-1, 1, x.size).reshape(x.shape)
    grads = [jax.jit(jax.grad(lambda x, f=f: jnp.sum(jnp.sin(f(x)) * weights)))(x) for f in (ours, plain)]
    np.testing.assert_array_equal(grads[0], grads[1])
    assert residual_bytes(ours, x) == 4  # four booleans
    assert residual_bytes(plain, x) >= x.size * (1 + 4)  # the broadcast mask and float32 zeros


def test_a_vit_gradient_needs_less_memory_with_them():
    """The compiled gradient of a small bf16 ViT holds less temp memory with jaxvit's LayerNorm and
    GELU than traced under residuals('plain') (nnx's LayerNorm and jax.nn.gelu; XLA:CPU, jaxlib
    0.10.2: measured 0.83x)."""
    import jaxvit

    model = jaxvit.create_model("vit_tiny_patch16_224", dtype="bfloat16", num_classes=10, depth=2, img_size=64)
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.zeros((16, 64, 64, 3), jnp.float32)

    def temp_bytes(residuals: str) -> int:
        def loss(p):  # a new function per setting: its own trace
            return nnx.merge(graph, p, rest)(x).astype(jnp.float32).sum()

        with common.residuals(residuals):
            return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes

    plain, ours = temp_bytes("plain"), temp_bytes("lean")
    assert ours < 0.93 * plain, (ours, plain)
    assert common._residuals.get() == "lean"  # the context put the default back


def linear_pair(shape, out: int):
    """jaxvit's Linear and an nnx.Linear with jax's own product, the same weights, and an input."""
    ours = common.linear(shape[-1], out, dtype=jnp.float32, rngs=nnx.Rngs(0))
    ours.bias[...] = jax.random.normal(jax.random.key(2), (out,))
    plain = nnx.Linear(shape[-1], out, rngs=nnx.Rngs(0))
    plain.kernel[...], plain.bias[...] = ours.kernel[...], ours.bias[...]
    return ours, plain, jax.random.normal(jax.random.key(3), shape)


def kernel_and_input_grads(layer, x):
    graph, params = nnx.split(layer)

    def loss(p, x):
        return (nnx.merge(graph, p)(x) ** 2).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)


@pytest.mark.parametrize("shape", [(4, 9, 48), (2, 3, 5, 48), (7, 48)])
def test_linear_merges_rows_and_computes_the_same_values(shape):
    """flat_dot_general: the same outputs and gradients as nnx.Linear's lax.dot_general."""
    ours, plain, x = linear_pair(shape, 40)
    # fp32 on one CPU. Measured bitwise equal: outputs, input and kernel gradients (|kernel grad| up
    # to 62), bias gradients. The tolerances (about 1e-6 of each magnitude) leave room for a kernel
    # library that groups the kernel gradient's 36-63 row sums differently for the merged rows.
    np.testing.assert_allclose(ours(x), plain(x), rtol=1e-6, atol=1e-6)
    (g_ours, dx_ours), (g_plain, dx_plain) = kernel_and_input_grads(ours, x), kernel_and_input_grads(plain, x)
    np.testing.assert_allclose(dx_ours, dx_plain, rtol=1e-5, atol=1e-5)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(g_ours[name][...], g_plain[name][...], rtol=1e-5, atol=1e-4)
    assert ours.kernel[...].shape == (48, 40) and isinstance(ours, nnx.Linear)  # timm's layout, converted as before


def test_linear_falls_back_for_other_products():
    """Products that are not (..., in) @ (in, out) go to lax.dot_general unchanged."""
    a, b = jax.random.normal(jax.random.key(0), (3, 4, 5)), jax.random.normal(jax.random.key(1), (3, 5, 6))
    batched = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_array_equal(common.flat_dot_general(a, b, batched), jax.lax.dot_general(a, b, batched))
    c = jax.random.normal(jax.random.key(2), (4, 5))
    contract_first = (((0,), (1,)), ((), ()))
    np.testing.assert_array_equal(common.flat_dot_general(a[0].T, c, contract_first),
                                  jax.lax.dot_general(a[0].T, c, contract_first))


def test_linear_kernel_gradient_reads_the_output_gradient_untransposed():
    """The reason for the merge: XLA:CPU compiles the kernel gradient of a Linear on (B, T, C)
    without writing the output gradient (or the input) transposed first; with jax's own product it
    does (jaxlib 0.10.2: one f32[out, B*T] copy per Linear)."""
    def transposed_copies(layer, x) -> list[str]:
        graph, params = nnx.split(layer)

        def loss(p, x):  # a product downstream, so the output gradient is an array XLA must lay out
            return jnp.tanh(nnx.merge(graph, p)(x)).sum()

        hlo = jax.jit(jax.grad(loss)).lower(params, x).compile().as_text()
        rows, widths = x.shape[0] * x.shape[1], layer.kernel[...].shape  # (in, out)
        return [line for line in hlo.splitlines()
                if " = f32[" in line and any(f"[{d},{rows}]" in line.split(" = ")[1].split(" ")[0] for d in widths)]

    ours, plain, x = linear_pair((8, 50, 32), 96)
    assert transposed_copies(ours, x) == []
    assert transposed_copies(plain, x), "jax's own product no longer makes XLA transpose: the merge may be moot"
