"""Swin Transformer v1: timm's names, parameter counts, window rules and logits."""

from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxvit
from jaxvit.layers.window import (
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
    windows_last,
    windows_last_reverse,
)
from jaxvit.models.base import param_count

SWIN_NAMES = sorted(jaxvit.list_models(family="swin"))  # all 9: v1 and Swin-S3
BASE = "swin_tiny_patch4_window7_224"
# The small-data recipes: 4 stages at embed_dim 64, patch 4.
RECIPE = dict(embed_dim=64, depths=(2, 2, 8, 2), num_heads=(2, 4, 8, 16), patch_size=4)
DATASETS = {
    "cifar10-32px": dict(RECIPE, img_size=32, window_size=8, num_classes=10),
    "stl10-96px": dict(RECIPE, img_size=96, window_size=12, num_classes=10),
    "tiny_imagenet-64px": dict(RECIPE, img_size=64, window_size=8, num_classes=200),
}
# Two stages at 32 dims: the window rules at small maps (their logits against timm's: the parity
# table in tests/convert/test_convert.py)
TINY = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), num_classes=10)
PARITY = {
    "img32-window4": dict(TINY, img_size=32, window_size=4),  # stage 0 shifted, stage 1 clamped
    "img64-window4": dict(TINY, img_size=64, window_size=4),  # both stages shifted
    "img48-window5": dict(TINY, img_size=48, window_size=5),  # padded 12->15 and 6->10, shifted
}


def _timm():
    return pytest.importorskip("timm", reason="comparing with timm needs it: pip install -e '.[torch]'")


def _convert():
    return pytest.importorskip("convert", reason="the converter needs torch: pip install -e '.[torch]'")


def timm_meta(name: str, **kwargs):
    """timm's model on the meta device: its structure and counts without allocating weights."""
    return _timm().create_model(name, pretrained=False, device="meta", **kwargs)


def abstract(name: str, **kwargs):
    """The model with shapes for values (nnx.eval_shape), built once per configuration."""
    return _abstract(name, tuple(sorted(kwargs.items())))


@functools.cache
def _abstract(name: str, items: tuple):
    return jaxvit.abstract_model(name, **dict(items))


def run(model, x, features: bool = False):
    """Compiled eval-mode forward: logits, or (features, logits)."""
    model.eval()

    def forward(m, x):
        f = m.forward_features(x)
        return (f, m.forward_head(f)) if features else m.forward_head(f)

    return nnx.jit(forward)(model, x)


@pytest.mark.parametrize("name", SWIN_NAMES)
def test_matches_timm_at_defaults(name):
    """Parameter count, torch keys, no_weight_decay and each block's window, against timm's (the
    default cfg: tests/convert/test_convert.py's full-size check)."""
    plan = _convert().plan
    tm = timm_meta(name)
    jm = abstract(name)
    assert param_count(jm) == sum(p.numel() for p in tm.parameters())
    assert {e.torch_key for e in plan(jm)} == set(tm.state_dict())
    assert jm.no_weight_decay() == tm.no_weight_decay()
    assert len(jm.no_weight_decay()) == sum(len(stage.blocks) for stage in jm.layers)
    # per block: the window (Swin-S3's differ by stage) and shift, clamped at the name's size
    for ts, js in zip(tm.layers, jm.layers, strict=True):
        for tb, jb in zip(ts.blocks, js.blocks, strict=True):
            assert (jb.window_size, jb.shift_size) == (tuple(tb.window_size), tuple(tb.shift_size))


@pytest.mark.parametrize(
    "kwargs", [pytest.param(k, id=i) for i, k in {**DATASETS, **PARITY}.items()]
)
def test_windows_drop_path_and_torch_keys_match_timm(kwargs):
    """Per block: the clamped window, the shift and the drop-path rate; and every torch key."""
    plan = _convert().plan
    kwargs = dict(kwargs, drop_path_rate=0.2)
    tm = timm_meta(BASE, **kwargs)
    jm = abstract(BASE, **kwargs)
    assert param_count(jm) == sum(p.numel() for p in tm.parameters())
    for ts, js in zip(tm.layers, jm.layers, strict=True):
        for tb, jb in zip(ts.blocks, js.blocks, strict=True):
            assert jb.window_size == tuple(tb.window_size)
            assert jb.shift_size == tuple(tb.shift_size)
            rate = tb.drop_path1.drop_prob if hasattr(tb.drop_path1, "drop_prob") else 0.0
            assert jb.drop_path1.rate == pytest.approx(rate)
    assert {e.torch_key for e in plan(jm)} == set(tm.state_dict())


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_dataset_variants_give_logits(dataset):
    """The whole forward traced (train mode: drop path on); the CIFAR-10 one also runs below."""
    kwargs = DATASETS[dataset]
    size = kwargs["img_size"]
    images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    out = nnx.eval_shape(lambda m, x: m(x), abstract(BASE, **kwargs), images)
    assert out.shape == (2, kwargs["num_classes"]) and out.dtype == jnp.float32


def test_window_ops_match_timm():
    torch = pytest.importorskip("torch")
    swin = _timm().models.swin_transformer
    x = np.random.RandomState(0).randn(2, 12, 15, 5).astype(np.float32)
    windows = window_partition(jnp.asarray(x), (4, 5))
    expected = swin.window_partition(torch.from_numpy(x), (4, 5)).reshape(-1, 20, 5).numpy()
    np.testing.assert_array_equal(windows, expected)
    np.testing.assert_array_equal(window_reverse(windows, (4, 5), 12, 15), x)
    # the layout the blocks use: the same windows, each image's kept together
    last = windows_last(jnp.asarray(x), (4, 5))
    assert last.shape == (2, 20, 9, 5)
    np.testing.assert_array_equal(np.asarray(last).transpose(0, 2, 1, 3).reshape(-1, 20, 5), expected)
    np.testing.assert_array_equal(windows_last_reverse(last, (4, 5), 12, 15), x)
    for wh, ww in [(7, 7), (4, 5), (1, 3)]:
        np.testing.assert_array_equal(
            relative_position_index(wh, ww), swin.get_relative_position_index(wh, ww).numpy()
        )
    # The shifted-window mask timm's block keeps as a buffer, padded map included (30 -> 35).
    for res, window in [((16, 16), 8), ((30, 30), 7), ((14, 14), 7)]:
        block = swin.SwinTransformerBlock(8, res, num_heads=2, window_size=window, shift_size=window // 2)
        hp, wp = (-(-r // window) * window for r in res)
        mask = shifted_window_mask(hp, wp, (window, window), (window // 2, window // 2))
        np.testing.assert_array_equal(mask, block.attn_mask.numpy())
    assert shifted_window_mask(14, 14, (7, 7), (0, 0)) is None


def test_window_bias_is_one_array_for_all_images(monkeypatch):
    """Each block hands attention its bias (relative positions, plus the shift mask in shifted
    blocks) once for every image: (1, windows * heads, N, N), the windows folded into the heads'
    axis, not repeated per window of the batch (on the fused kernel a full-batch bias and its
    gradient would cross memory each step). Its values: timm's logits (tests/convert)."""
    attention_module = importlib.import_module("jaxvit.layers.attention")  # the package exports a function of that name
    shapes = []
    real = attention_module.attention_uncut

    def recorded(q, k, v, *, bias=None, **kwargs):
        shapes.append((q.shape, bias.shape))
        return real(q, k, v, bias=bias, **kwargs)

    monkeypatch.setattr(attention_module, "attention_uncut", recorded)
    images = jax.ShapeDtypeStruct((3, 64, 64, 3), jnp.float32)
    nnx.eval_shape(lambda m, x: m(x), abstract(BASE, **PARITY["img64-window4"]), images)
    # stage 0: a 16x16 map, 16 windows of 4x4 tokens, 2 heads 16 wide; stage 1: 8x8, 4 windows,
    # 4 heads; two blocks each (the second shifted)
    assert shapes == [((3, 16, 32, 16), (1, 32, 16, 16))] * 2 + [((3, 16, 16, 16), (1, 16, 16, 16))] * 2


def test_window_attention_traces_on_the_fused_kernel(monkeypatch):
    """The GPU's path: cuDNN's fused kernel takes the windows folded into the heads, with the
    shared bias, forward and backward, by jax's own shape checks (traced, not run: where no cuDNN
    is installed its version check answers as ``step_memory.py --kept-only`` has it)."""
    from jax._src.cudnn import fused_attention_stablehlo as fused

    if fused.cuda_versions is None:
        monkeypatch.setattr(fused, "check_cudnn_version", lambda: 91000)
    attention_module = importlib.import_module("jaxvit.layers.attention")
    model = jaxvit.create_model(BASE, dtype="bfloat16", **PARITY["img64-window4"])
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def loss(params, x):
        return jnp.mean(nnx.merge(graph, params, rest)(x).astype(jnp.float32) ** 2)

    with attention_module.implementation("cudnn"):
        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params, jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)))
    # four blocks, each one fused call forward and one backward
    assert jaxpr.count("dot_product_attention_fwd_wrapper") == jaxpr.count("dot_product_attention_bwd_wrapper") == 4


def test_bfloat16_compute_keeps_float32_params():
    """The CIFAR-10 recipe run for real, in bfloat16 and float32 (stage 3 at 2 of its 8 blocks:
    the dtypes are the same at any depth; 18.6 s of the suite with all 8)."""
    kwargs = dict(DATASETS["cifar10-32px"], depths=(2, 2, 2, 2))
    m = jaxvit.create_model(BASE, dtype="bfloat16", **kwargs)
    assert {x.dtype for x in jax.tree.leaves(nnx.state(m, nnx.Param))} == {jnp.dtype("float32")}
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    feats, logits = run(m, x, features=True)
    assert feats.dtype == jnp.bfloat16 and feats.shape == (2, 1, 1, 512)
    assert logits.dtype == jnp.float32 and logits.shape == (2, 10)
    f32 = jaxvit.abstract_model(BASE, **kwargs)  # the same weights (and RNG state), float32 compute
    nnx.update(f32, nnx.state(m))
    ref = run(f32, x)
    assert bool(jnp.isfinite(ref).all())
    np.testing.assert_allclose(logits, ref, atol=0.1)


def test_interface_and_module_tree():
    m = jaxvit.create_model(BASE, **PARITY["img32-window4"])
    flat = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))}
    for key in ["patch_embed.proj.kernel", "patch_embed.norm.scale", "layers.1.downsample.norm.scale",
                "layers.1.downsample.reduction.kernel", "layers.0.blocks.1.attn.qkv.kernel",
                "layers.0.blocks.1.attn.relative_position_bias_table", "layers.1.blocks.0.mlp.fc2.bias",
                "norm.scale", "head.fc.kernel"]:
        assert key in flat, key
    assert m.layers[0].downsample is None and "layers.1.downsample.reduction.bias" not in flat
    assert m.layers[0].blocks[0].attn.relative_position_bias_table.shape == (49, 2)
    assert m.get_classifier() is m.head.fc
    feats = jnp.zeros((1, 2, 2, 64))
    assert m.forward_head(feats, pre_logits=True).shape == (1, 64)
    m.reset_classifier(3)
    assert m.forward_head(feats).shape == (1, 3)
    m.reset_classifier(0)
    assert m.get_classifier() is None and m.forward_head(feats).shape == (1, 64)
    assert "layers.0.blocks.0.attn.relative_position_bias_table" in m.no_weight_decay()
    alias = jaxvit.split_name("swin_base_patch4_window7_224_in22k")
    assert alias == ("swin_base_patch4_window7_224", "ms_in22k")
    alias = jaxvit.split_name("swin_large_patch4_window12_384_in22k")
    assert alias == ("swin_large_patch4_window12_384", "ms_in22k")
