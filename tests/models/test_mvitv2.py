"""MViTv2 against timm: parameter counts of keyword variants, bfloat16 compute, timm's size rules
and the model interface (each name's tensors and default cfg at full size: the full-size check of
tests/convert/test_convert.py). Its logits against timm's (224 px, the 32 px patch-stride-2 CIFAR variant, the
cls-token / abs-pos / max-pool / expand_attn=False paths) are rows of the parity table in
tests/convert/test_convert.py.

Forwards run under ``nnx.jit``: eagerly, MViTv2's many distinct shapes cost ~800 one-op
compilations per forward, several times slower than one jit on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import filled_model
from flax import nnx

import jaxvit
from jaxvit.models.base import param_count

try:
    import timm
    import torch
    from timm.models.mvitv2 import MultiScaleVit as TimmMultiScaleVit
    from timm.models.mvitv2 import MultiScaleVitCfg as TimmCfg
except ImportError:  # the jaxvit-only tests still run
    timm = torch = None
needs_timm = pytest.mark.skipif(
    timm is None, reason="comparing with timm needs torch and timm: pip install -e '.[torch]'"
)

NAMES = ["mvitv2_tiny", "mvitv2_small", "mvitv2_base", "mvitv2_small_cls", "mvitv2_base_cls", "mvitv2_large",
         "mvitv2_large_cls", "mvitv2_huge_cls"]
TINY_DEPTHS = (1, 2, 5, 2)
# seed 004's "mvit2_tiny_patch2": CIFAR-10 at 32 px with a 3x3 / stride-2 stem.
CIFAR = dict(img_size=32, num_classes=10, patch_kernel=(3, 3), patch_stride=(2, 2), patch_padding=(1, 1))
# The other code paths, small: class token + abs pos, max pooling, width change in the MLP.
VARIANT = dict(img_size=64, num_classes=5, depths=(1, 2, 1, 1), embed_dim=32, num_heads=2,
               use_cls_token=True, use_abs_pos=True, mode="max", expand_attn=False)


def abstract(name: str, **kwargs):
    return jaxvit.abstract_model(name, **kwargs)


def timm_mvit(depths=TINY_DEPTHS, img_size=224, num_classes=1000, **cfg) -> torch.nn.Module:
    """timm's MultiScaleVit from cfg fields as keywords (timm.create_model does not take them)."""
    return TimmMultiScaleVit(TimmCfg(depths=depths, **cfg), img_size=img_size, num_classes=num_classes)


@nnx.jit
def forward(model, x):
    return model(x)


def images(size: int) -> np.ndarray:
    """A fixed NCHW batch of two in [-1, 1]."""
    return np.random.RandomState(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)


@needs_timm
def test_timm_keyword_variants_param_count():
    for kwargs in (CIFAR, VARIANT):
        with torch.device("meta"):
            theirs = timm_mvit(**kwargs)
        assert param_count(abstract("mvitv2_tiny", **kwargs)) == sum(
            p.numel() for p in theirs.parameters()
        )


def test_cifar_variant_tables_and_bfloat16():
    """The 32 px stride-2 variant (its logits against timm's: the parity table in
    tests/convert/test_convert.py): relative-position tables for a 16-px map, and bfloat16
    compute with the same float32 params gives float32 logits close to the float32 ones (one
    block a stage: the dtype handling is per layer type, not per depth)."""
    small = dict(CIFAR, depths=(1, 1, 1, 1))
    model = filled_model("mvitv2_tiny", **small)
    model.eval()
    assert model.stages[0].blocks[0].attn.rel_pos_h.shape == (31, 96)  # 2 * 16 - 1 rows
    x = jnp.asarray(images(32).transpose(0, 2, 3, 1))
    y32 = forward(model, x)
    bf16 = abstract("mvitv2_tiny", dtype=jnp.bfloat16, **small)
    nnx.update(bf16, nnx.state(model, nnx.Param))
    bf16.eval()
    params = jax.tree.leaves(nnx.state(bf16, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}
    y16 = forward(bf16, x)
    assert y16.dtype == jnp.float32 and float(jnp.abs(y32).max()) > 0
    assert float(jnp.abs(y16 - y32).max()) < 0.1 * max(1.0, float(jnp.abs(y32).max()))


def test_cls_abs_pos_max_pool_no_expand_build_their_layers():
    """VARIANT's code paths (their logits against timm's: the parity table) are the layers built."""
    blk = abstract("mvitv2_tiny", **VARIANT).stages[1].blocks[1]
    assert blk.shortcut_proj_mlp is not None and blk.attn.pool_q is not None and blk.attn.norm_q is None


def test_timm_names_and_cfg():
    assert jaxvit.list_models("mvitv2*") == sorted(NAMES)
    assert jaxvit.list_models(family="mvitv2") == sorted(NAMES)
    m = abstract("mvitv2_small_cls")
    assert m.global_pool == "token" and m.cls_token.shape == (1, 1, 96)
    flat = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))}
    for key in ["patch_embed.proj.kernel", "stages.1.blocks.0.shortcut_proj_attn.kernel",
                "stages.0.blocks.0.attn.qkv.kernel", "stages.0.blocks.0.attn.pool_q.kernel",
                "stages.0.blocks.0.attn.norm_k.scale", "stages.3.blocks.1.attn.rel_pos_w",
                "stages.3.blocks.1.mlp.fc2.bias", "norm.scale", "head.fc.kernel"]:
        assert key in flat, key
    assert m.stages[0].blocks[0].attn.pool_k.kernel.shape == (3, 3, 1, 96)  # depthwise, HWIO
    assert "stages.2.blocks.3.attn.rel_pos_h" in m.no_weight_decay() and "cls_token" in m.no_weight_decay()
    assert jaxvit.get_entry("mvitv2_tiny").default_cfg["crop_pct"] == 0.9


def test_timm_size_rules_and_clear_errors():
    # 100 px: timm's nominal sizes (100 // 4 // 2 = 12) are smaller than the pooled ones (13):
    # timm's forward fails on the relative-position lookup; jaxvit says so at build.
    with pytest.raises(ValueError, match="relative-position table"):
        abstract("mvitv2_tiny", img_size=100)
    with pytest.raises(ValueError, match="patch_kernel"):
        abstract("mvitv2_tiny", img_size=32, patch_size=2)
    with pytest.raises(NotImplementedError, match="pool_first"):
        abstract("mvitv2_tiny", pool_first=True)
    with pytest.raises(TypeError, match="depth"):
        abstract("mvitv2_tiny", depth=3)
    # 96 px works in timm and here; model_args lists (as JSON gives back) are accepted.
    m = abstract("mvitv2_tiny", img_size=96, depths=[1, 2, 5, 2], stride_q=[[1, 1], [2, 2], [2, 2], [2, 2]])
    assert m.stages[3].feat_size == (3, 3) and m.stages[0].blocks[0].attn.k_size == (6, 6)


def test_head_interface():
    m = abstract("mvitv2_tiny", **CIFAR)
    m.reset_classifier(3, rngs=nnx.Rngs(0))
    assert m.get_classifier().kernel.shape == (768, 3) and m.num_classes == 3
    feats = nnx.eval_shape(lambda m, x: m.forward_features(x), m, jnp.zeros((2, 32, 32, 3)))
    assert feats.shape == (2, 4, 768)
    pre = nnx.eval_shape(lambda m, f: m.forward_head(f, pre_logits=True), m, feats)
    assert pre.shape == (2, 768) and pre.dtype == jnp.float32
    m.reset_classifier(0)
    assert m.get_classifier() is None
    assert set(m.group_matcher()) == {"stem", "blocks"}
