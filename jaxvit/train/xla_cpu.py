"""Which library runs the matrix products of the jitted train and eval steps on a CPU
(``config.cpu_dots``), as XLA compile options for those two programs only.

- ``auto`` (default): XLA's own choice - nothing is passed. jax 0.10's XLA:CPU hands every matrix
  product whose layout it takes to YNNPACK, besides reductions and convolutions.
- ``xla``: the products run on XLA's own dot kernels; YNNPACK keeps the reductions and
  convolutions that jax 0.10 gives it by default (the compile option
  ``xla_cpu_experimental_ynn_fusion_type`` without ``LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT``).

On this project's 2-core AVX-512 machine ``xla`` made plain ViTs' steps faster (their time goes
to the Linear layers' large products: vit_small's -17%) and models whose attention runs on short
sequences slower (the digits model +8%, Swin-T +3%): by its op profile, YNNPACK runs those batched products
faster; XLA chooses per program, not per product. README "Measured" has the figures and their
commands (``benchmarks/ab_step.py`` in one process, ``benchmarks/ab_host_memory.py --cpu-dots
auto,xla`` across processes).

Off a CPU the setting does nothing. ``jax.pmap`` takes no compile options, so ``xla`` needs
``--config.parallelism=pjit`` on a CPU."""

from __future__ import annotations

from typing import Any

from jaxvit.errors import ConfigError

CPU_DOTS = ("auto", "xla")

# jax 0.10's default YNNPACK fusion types are INDIVIDUAL_DOT, REDUCE and INDIVIDUAL_CONVOLUTION
# (the compiled HLO of a train step is the same with this list spelled out as without it)
YNN_TYPES_WITHOUT_DOTS = "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"


def compiler_options(cpu_dots: str, platform: str) -> dict[str, Any] | None:
    """The compile options of ``config.cpu_dots`` for a program on ``platform`` (None: none)."""
    if cpu_dots not in CPU_DOTS:
        raise ConfigError(f"config.cpu_dots={cpu_dots!r} is not one of {CPU_DOTS}")
    if cpu_dots == "auto" or platform != "cpu":
        return None
    return {"xla_cpu_experimental_ynn_fusion_type": YNN_TYPES_WITHOUT_DOTS}


def rejected_option(error: Exception) -> bool:
    """Whether a compile failed because this jaxlib's XLA does not take an option or its value."""
    return "While setting option" in str(error) or "compile option" in str(error)


def check_config(config) -> None:
    """Fails before anything is written where ``config.cpu_dots`` cannot work here: pmap on a
    CPU, or a jaxlib whose XLA lacks the option or its values."""
    import jax

    options = compiler_options(config.cpu_dots, jax.default_backend())
    if options is None:
        return
    if config.parallelism == "pmap":
        raise ConfigError("config.cpu_dots='xla' needs --config.parallelism=pjit on a CPU (jax.pmap takes no "
                          "compile options), or keep --config.cpu_dots=auto")
    try:
        jax.jit(lambda x: x @ x).lower(jax.numpy.ones((8, 8))).compile(compiler_options=options)
    except jax.errors.JaxRuntimeError as e:
        if not rejected_option(e):
            raise
        raise ConfigError(f"config.cpu_dots='xla': this jaxlib's XLA:CPU does not take it "
                          f"({str(e).splitlines()[0]}); use --config.cpu_dots=auto") from None
