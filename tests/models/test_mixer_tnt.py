"""MLP-Mixer (with timm's gMixer, ResMLP and gMLP) and TNT: timm's names, parameter counts,
default cfgs, init, shapes, dtypes and aliases. Their logits against timm's, tiny variants
included, are rows of the parity table in tests/convert/test_convert.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import timm_mixer
from flax import nnx

import jaxvit
from jaxvit.registry import get_entry, split_name

# Tiny variants (2 blocks, width 32) at 32 px.
MIXER_TINY = dict(img_size=32, patch_size=4, num_blocks=2, embed_dim=32, num_classes=10)
TNT_TINY = dict(img_size=32, patch_size=4, inner_dim=8, embed_dim=32, depth=2, num_heads_inner=2,
                num_heads_outer=2, num_classes=10)
# (name, keywords) per tiny model; TNT at both strides a 4 px patch allows, and legacy.
TINY = {
    "mixer": ("mixer_s16_224", MIXER_TINY),
    "gmixer": ("gmixer_12_224", MIXER_TINY),
    "resmlp": ("resmlp_24_224", MIXER_TINY),
    "gmlp": ("gmlp_s16_224", MIXER_TINY),
    "tnt-stride1": ("tnt_s_patch16_224", dict(TNT_TINY, first_stride=1)),
    "tnt-stride2": ("tnt_s_patch16_224", dict(TNT_TINY, first_stride=2)),
    "tnt-legacy": ("tnt_s_legacy_patch16_224", dict(TNT_TINY, first_stride=2)),
    "tnt-patch6-avg": ("tnt_s_patch16_224", dict(TNT_TINY, patch_size=6, global_pool="avg")),
}


def batch(size: int = 32, n: int = 2) -> jax.Array:
    return jax.random.normal(jax.random.key(0), (n, size, size, 3))


@nnx.jit
def forward(model, x):
    return model(x)


@nnx.jit
def features_pooled_logits(model, x):
    feats = model.forward_features(x)
    return feats, model.forward_head(feats, pre_logits=True), model.forward_head(feats)


# The registered names (each one's tensors, by timm key and shape, and its default cfg are timm's:
# tests/convert/test_convert.py's full-size check, which every registered name of these families runs).
MIXER_NAMES = jaxvit.list_models(family="mixer")
NAMES = MIXER_NAMES + jaxvit.list_models(family="tnt")


def test_cfg_means_and_crops():
    assert len(MIXER_NAMES) == 15 and len(NAMES) == 18
    for name in NAMES:
        cfg = get_entry(name).default_cfg
        # timm: Mixer and gMLP at inception's 0.5, gMixer and ResMLP at ImageNet's mean/std
        half = not name.startswith(("gmixer", "resmlp"))
        assert (cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)) == half, name
        assert cfg["crop_pct"] == (0.9 if name.startswith("tnt") else 0.875), name


def test_mixer_interface_is_timms():
    """The parameter groups for layer-wise lr are timm's, and so are the weight-decay exemptions:
    none beyond 1-d tensors (timm's MlpMixer has no no_weight_decay). (Each name's preprocessing
    is timm's: the full-size check.)"""
    pytest.importorskip("timm", reason="timm is not installed: the interface stays unchecked")
    kwargs = {k: v for k, v in MIXER_TINY.items() if k != "num_classes"}
    model = jaxvit.abstract_model("gmlp_s16_224", **kwargs)
    tmodel = timm_mixer("gmlp_s16_224", device="meta", **kwargs)
    assert model.num_classes == tmodel.num_classes == 1000
    assert model.group_matcher() == tmodel.group_matcher()
    assert model.no_weight_decay() == set() and not hasattr(tmodel, "no_weight_decay")


# timm 1.0.31's register_model_deprecations in mlp_mixer.py.
MIXER_ALIASES = {
    "mixer_b16_224_in21k": "mixer_b16_224.goog_in21k_ft_in1k",
    "mixer_l16_224_in21k": "mixer_l16_224.goog_in21k_ft_in1k",
    "mixer_b16_224_miil": "mixer_b16_224.miil_in21k_ft_in1k",
    "mixer_b16_224_miil_in21k": "mixer_b16_224.miil_in21k",
    "resmlp_12_distilled_224": "resmlp_12_224.fb_distilled_in1k",
    "resmlp_24_distilled_224": "resmlp_24_224.fb_distilled_in1k",
    "resmlp_36_distilled_224": "resmlp_36_224.fb_distilled_in1k",
    "resmlp_big_24_distilled_224": "resmlp_big_24_224.fb_distilled_in1k",
    "resmlp_big_24_224_in22ft1k": "resmlp_big_24_224.fb_in22k_ft_in1k",
    "resmlp_12_224_dino": "resmlp_12_224",
    "resmlp_24_224_dino": "resmlp_24_224",
}


def test_legacy_aliases_resolve():
    for alias, target in MIXER_ALIASES.items():
        arch, _, tag = target.partition(".")
        assert split_name(alias) == (arch, tag) and get_entry(alias).name == arch, alias
    m = jaxvit.abstract_model("mixer_b16_224_miil", **MIXER_TINY)
    assert m.pretrained_cfg["architecture"] == "mixer_b16_224"
    assert m.pretrained_cfg["tag"] == "miil_in21k_ft_in1k"
    assert m.head.kernel.shape == (32, 10)


def test_aliases_are_timms():
    pytest.importorskip("timm", reason="timm is not installed: the alias list stays unchecked")
    from timm.models import get_deprecated_models

    assert get_deprecated_models("mlp_mixer") == MIXER_ALIASES


def test_tnt_cifar_variant_builds_and_runs():
    """6 layers, 4 px patches of 32 px images, 16 pixel tokens of width 8 per patch."""
    m = jaxvit.create_model("tnt_s_patch16_224", img_size=32, patch_size=4, first_stride=1, inner_dim=8,
                            embed_dim=64, depth=6, num_heads_inner=2, num_heads_outer=4, num_classes=10)
    assert len(m.blocks) == 6
    assert m.pixel_pos.shape == (1, 8, 4, 4)  # timm's (1, C, h, w)
    assert m.pixel_embed.proj.kernel.shape == (7, 7, 3, 8)
    assert m.blocks[0].proj.kernel.shape == (16 * 8, 64)
    y = forward(m, batch(n=1))
    assert y.shape == (1, 10) and bool(jnp.isfinite(y).all())


def test_tnt_rejects_a_layout_legacy_cannot_unfold():
    with pytest.raises(ValueError, match="legacy TNT"):
        jaxvit.create_model("tnt_s_legacy_patch16_224", **dict(TNT_TINY, patch_size=6, first_stride=4))


@pytest.mark.parametrize("key", ["mixer", "resmlp", "gmlp", "tnt-stride2"])
def test_bfloat16_compute_float32_params_and_logits(key):
    name, kwargs = TINY[key]
    m = jaxvit.create_model(name, **kwargs, dtype="bfloat16")
    assert {x.dtype for x in jax.tree.leaves(nnx.state(m, nnx.Param))} == {jnp.dtype("float32")}
    feats, pooled, logits = features_pooled_logits(m, batch())
    assert (feats.dtype, logits.dtype) == (jnp.bfloat16, jnp.float32)
    ref = jaxvit.create_model(name, **kwargs)  # same seed: bf16 rounding is the only difference
    np.testing.assert_allclose(pooled, features_pooled_logits(ref, batch())[1], atol=0.1)


def test_drop_path_rules_follow_timm():
    mixer = jaxvit.abstract_model("mixer_s16_224", **MIXER_TINY, drop_path_rate=0.2)
    assert [b.drop_path.rate for b in mixer.blocks] == [0.2, 0.2]  # timm: the same in every block
    name, kwargs = TINY["tnt-stride2"]
    tnt = jaxvit.create_model(name, **kwargs, drop_path_rate=0.2)
    assert [b.drop_path.rate for b in tnt.blocks] == pytest.approx([0.0, 0.2])  # linear
    x = batch()
    assert not np.allclose(forward(tnt, x), forward(tnt, x)), "train mode samples new drop-path masks"
    tnt.eval()
    np.testing.assert_array_equal(forward(tnt, x), forward(tnt, x))


@pytest.mark.parametrize("kwargs,match", [
    (dict(block_layer="gated"), "block_layer 'gated' is not one of"),
    (dict(mlp_layer="swiglu"), "mlp_layer 'swiglu' is not one of"),
    (dict(norm_layer="rmsnorm"), "norm_layer 'rmsnorm' is not one of"),
    (dict(block_layer="spatial_gating", mlp_ratio=6), "needs mlp_layer='gated'"),
    (dict(block_layer="res"), "takes one mlp_ratio"),
    (dict(init_values=1e-5), "init_values is for block_layer='res'"),
])
def test_mixer_layer_keywords_reject_what_timm_cannot_build(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxvit.abstract_model("mixer_s16_224", **MIXER_TINY, **kwargs)


def test_classifier_interface():
    mixer = jaxvit.create_model("mixer_s16_224", **MIXER_TINY, nlhb=True)
    assert not np.asarray(mixer.head.kernel[...]).any()  # timm: zero classifier
    np.testing.assert_allclose(mixer.head.bias[...], -np.log(10.0), rtol=1e-6)  # log-prior bias
    mixer.reset_classifier(0, global_pool="")
    assert forward(mixer, batch()).shape == (2, 64, 32)
    name, kwargs = TINY["tnt-stride2"]
    tnt = jaxvit.abstract_model(name, **kwargs)
    tnt.reset_classifier(3)
    assert tnt.head.kernel.shape == (32, 3)
    assert tnt.no_weight_decay() == {"patch_pos", "pixel_pos", "cls_token"}


# ResMLP's four names at one tiny size: their layer-scale init_values (1e-4, 1e-5, 1e-6, 1e-6)
@pytest.mark.parametrize("name", ["mixer_s16_224", "gmixer_12_224", "resmlp_12_224", "resmlp_24_224",
                                  "resmlp_36_224", "resmlp_big_24_224", "gmlp_s16_224"])
def test_init_is_timms(name):
    """A fresh model's tensors are drawn as timm's _init_weights draws them: every tensor (each
    half of its output rows apart: GluMlp's gate half) that timm fills with a constant (zero
    head, LayerNorm/Affine ones and zeros, layer scales, the gate biases of 1) holds it here,
    and every random one has timm's spread (xavier weights, N(0, 1e-6) MLP biases and gate
    weights, lecun-normal stem)."""
    pytest.importorskip("timm", reason="timm is not installed: the init stays unchecked")
    import torch

    from convert.rules import to_timm

    torch.manual_seed(0)
    theirs = {k: v.numpy() for k, v in timm_mixer(name, **MIXER_TINY).state_dict().items()}
    ours = to_timm(jaxvit.create_model(name, **MIXER_TINY))
    assert sorted(ours) == sorted(theirs)
    for key, t in theirs.items():
        rows = t.shape[0] // 2
        for part in [slice(None)] if rows == 0 else [slice(None, rows), slice(rows, None)]:
            tp, op = t[part], ours[key][part]
            if tp.min() == tp.max():
                np.testing.assert_allclose(op, tp, rtol=1e-6, err_msg=key)
            else:  # wide enough to tell N(0, 1e-6) from zero, 0.02 from xavier's ~0.1; 3x: 8-value halves
                bound = 3 if tp.size < 256 else 1.25
                assert 1 / bound < op.std() / tp.std() < bound, (key, part, op.std(), tp.std())


# --- parity with timm ------------------------------------------------------------------


def test_unfold_order_is_torch_unfold():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from jaxvit.models.tnt import _unfold

    x = np.random.RandomState(0).randn(2, 3, 14, 11).astype(np.float32)  # leftover rows/cols
    ref = torch.nn.functional.unfold(torch.from_numpy(x), kernel_size=(4, 3), stride=(4, 3))
    ref = ref.transpose(1, 2).reshape(-1, 3, 4, 3).numpy()  # timm's (B*L, C, kh, kw)
    got = np.asarray(_unfold(jnp.asarray(x.transpose(0, 2, 3, 1)), (4, 3)))
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), ref)


@pytest.mark.parametrize("key", sorted(TINY))
def test_tiny_shapes(key):
    """Features, pooled features and logits of each tiny variant have their shapes (their logits
    against timm's: rows of the parity table in tests/convert/test_convert.py)."""
    name, kwargs = TINY[key]
    jmodel = jaxvit.create_model(name, **kwargs)
    jmodel.eval()
    feats, pooled, got = (np.asarray(y) for y in features_pooled_logits(jmodel, np.asarray(batch(), np.float32)))
    tokens = (32 // kwargs["patch_size"]) ** 2 + (0 if get_entry(name).family == "mixer" else 1)
    assert (feats.shape, pooled.shape, got.shape) == ((2, tokens, 32), (2, 32), (2, 10))
    assert np.all(np.isfinite(got))
