"""Layers written once and shared by every model family."""

from jaxvit.layers.attention import Attention, attention
from jaxvit.layers.common import DropPath, dropout, gelu, layer_norm, linear
from jaxvit.layers.mlp import Mlp
from jaxvit.layers.patch_embed import PatchEmbed, to_2tuple
from jaxvit.layers.pos_embed import resample_abs_pos_embed

__all__ = [
    "Attention",
    "attention",
    "DropPath",
    "dropout",
    "gelu",
    "layer_norm",
    "linear",
    "Mlp",
    "PatchEmbed",
    "to_2tuple",
    "resample_abs_pos_embed",
]
