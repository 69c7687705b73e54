"""Layers written once and shared by every model family."""

import importlib as _importlib

from jaxvit.layers import remat
from jaxvit.layers.attention import Attention, attention
from jaxvit.layers.attention_pool import AttentionPoolLatent
from jaxvit.layers.common import DropPath, dropout, gelu, get_act, layer_norm, linear, make_norm, to_2tuple
from jaxvit.layers.diff_attention import DiffAttention, DiffParallelScalingBlock
from jaxvit.layers.layer_scale import Affine, LayerScale
from jaxvit.layers.mlp import GatedMlp, GluMlp, Mlp, SpatialGatingUnit, SwiGLU
from jaxvit.layers.parallel_scaling import ParallelScalingBlock
from jaxvit.layers.patch_embed import PatchEmbed
from jaxvit.layers.pos_embed import resample_abs_pos_embed

# the attention module itself (the name ``attention`` is its function): set_implementation, ...
attention_impl = _importlib.import_module("jaxvit.layers.attention")

__all__ = [
    "attention_impl",
    "Affine",
    "remat",
    "Attention",
    "attention",
    "AttentionPoolLatent",
    "DiffAttention",
    "DiffParallelScalingBlock",
    "DropPath",
    "dropout",
    "gelu",
    "get_act",
    "layer_norm",
    "LayerScale",
    "linear",
    "make_norm",
    "GatedMlp",
    "GluMlp",
    "Mlp",
    "ParallelScalingBlock",
    "PatchEmbed",
    "SpatialGatingUnit",
    "SwiGLU",
    "to_2tuple",
    "resample_abs_pos_embed",
]
