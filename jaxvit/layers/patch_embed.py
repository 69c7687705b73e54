"""Image to patch tokens with a strided conv (timm ``PatchEmbed``), NHWC."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers import init
from jaxvit.layers.common import Dtype, to_2tuple


def patch_grid(img_size: int | tuple[int, int], patch_size: int | tuple[int, int]):
    """(img_size, patch_size, grid_size, num_patches) of an image cut into patches, as timm's
    ``PatchEmbed`` (and TnT's ``PixelEmbed``) set them: a side the patch does not divide keeps
    its whole patches, the strided conv leaves the rest (SigLIP so400m/14 at 384 px: 27
    patches, the last 6 pixels unread)."""
    img, patch = to_2tuple(img_size), to_2tuple(patch_size)
    grid = tuple(s // p for s, p in zip(img, patch))
    return img, patch, grid, grid[0] * grid[1]


class PatchEmbed(nnx.Module):
    # the class defaults, for subclasses that build their own conv without this __init__ (MViTv2's)
    strict_img_size: bool = True
    norm: nnx.Module | None = None

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        *,
        bias: bool = True,
        flatten: bool = True,
        strict_img_size: bool = True,
        norm: nnx.Module | None = None,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.img_size, self.patch_size, self.grid_size, self.num_patches = patch_grid(img_size, patch_size)
        self.flatten = flatten
        # False (timm's dynamic_img_size): any input whose sides the patch divides
        self.strict_img_size = strict_img_size
        # on the embedded tokens (timm's norm_layer: Swin, AIMv2's embed_norm_layer); nnx.data: a subclass may set it
        self.norm = nnx.data(norm)
        self.proj = nnx.Conv(
            in_chans,
            embed_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="VALID",
            use_bias=bias,
            dtype=dtype,
            param_dtype=jnp.float32,
            kernel_init=init.lecun_normal,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.strict_img_size:
            if x.shape[1] % self.patch_size[0] or x.shape[2] % self.patch_size[1]:
                raise ConfigError(
                    f"input is {tuple(x.shape[1:3])}, not divisible by patch_size {self.patch_size}; "
                    "resize the images to a multiple of the patch size"
                )
        elif tuple(x.shape[1:3]) != self.img_size:
            raise ConfigError(
                f"input is {tuple(x.shape[1:3])} but the model was built for img_size "
                f"{self.img_size}; create the model with img_size={x.shape[1]}"
            )
        x = self.proj(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1]) if self.flatten else x
        return x if self.norm is None else self.norm(x)
