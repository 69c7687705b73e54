"""Initializers matching timm's defaults."""

from flax import nnx

# timm draws Linear weights and position embeddings from N(0, 0.02) truncated
# at +-2 (absolute, so effectively untruncated); Flax's truncated_normal cuts
# at +-2 std. The difference is immaterial for training.
trunc_normal_02 = nnx.initializers.truncated_normal(stddev=0.02)
zeros = nnx.initializers.zeros_init()
ones = nnx.initializers.ones_init()
lecun_normal = nnx.initializers.lecun_normal()


def normal(stddev: float) -> nnx.Initializer:
    return nnx.initializers.normal(stddev=stddev)
