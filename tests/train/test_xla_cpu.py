"""config.cpu_dots: the compile options it gives, and that XLA:CPU then runs the matrix products
on its own dot kernels instead of YNNPACK (jaxvit/train/xla_cpu.py)."""

import re

import jax
import jax.numpy as jnp
import pytest

from jaxvit.errors import ConfigError
from jaxvit.train import xla_cpu


def test_options_only_for_xla_on_a_cpu():
    assert xla_cpu.compiler_options("auto", "cpu") is None
    assert xla_cpu.compiler_options("xla", "gpu") is None and xla_cpu.compiler_options("xla", "tpu") is None
    assert xla_cpu.compiler_options("xla", "cpu") == {
        "xla_cpu_experimental_ynn_fusion_type": xla_cpu.YNN_TYPES_WITHOUT_DOTS}
    with pytest.raises(ConfigError, match="config.cpu_dots='ynn' is not one of"):
        xla_cpu.compiler_options("ynn", "cpu")


def _entry(options) -> str:
    """The optimized HLO's entry computation of a Linear's product and gradient, compiled with ``options``."""

    def loss(w, x):
        return jnp.sum(jnp.tanh(x @ w))

    x, w = jnp.ones((64, 32)), jnp.ones((32, 48))
    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(w, x).compile(compiler_options=options).as_text()
    return text[text.index("\nENTRY"):]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's compile option")
def test_xla_dots_leave_the_products_to_xla():
    auto, xla = _entry(xla_cpu.compiler_options("auto", "cpu")), _entry(xla_cpu.compiler_options("xla", "cpu"))
    dots = re.compile(r"= f32\[[\d,]+\]\{[\d,]+\} dot\(")
    # jax 0.10's XLA:CPU: the forward product and the input's gradient are YNNPACK fusions (the
    # kernel's gradient, a product over the rows, is not a form YNNPACK takes: 1 plain dot); if a
    # later jaxlib stops doing this, config.cpu_dots='auto' and 'xla' may mean the same: re-measure
    assert '"kind":"__ynn_fusion"' in auto and len(dots.findall(auto)) == 1, auto
    # with cpu_dots='xla' all three are XLA's own dots, and no YNNPACK fusion is left in this program
    assert len(dots.findall(xla)) == 3 and "__ynn_fusion" not in xla, xla
