"""MLP-Mixer and TNT: timm's names, parameter counts, shapes, dtypes, aliases, and logits
parity with timm on tiny variants (timm weights moved in through ``convert``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxvit
from jaxvit.models.base import param_count
from jaxvit.registry import get_entry, split_name

# timm 1.0.31's counts at the registered defaults (1000 classes, 224 px); checked against
# timm itself in test_counts_are_timms when it is installed.
TIMM_PARAM_COUNTS = {
    "mixer_s16_224": 18_528_264,
    "mixer_s32_224": 19_104_624,
    "mixer_b16_224": 59_880_472,
    "mixer_b32_224": 60_293_428,
    "mixer_l16_224": 208_196_168,
    "mixer_l32_224": 206_939_264,
    "tnt_s_patch16_224": 23_768_584,
    "tnt_s_legacy_patch16_224": 23_755_336,
    "tnt_b_patch16_224": 65_428_680,
}

# Tiny variants (2 blocks, width 32) at 32 px.
MIXER_TINY = dict(img_size=32, patch_size=4, num_blocks=2, embed_dim=32, num_classes=10)
TNT_TINY = dict(img_size=32, patch_size=4, inner_dim=8, embed_dim=32, depth=2, num_heads_inner=2,
                num_heads_outer=2, num_classes=10)
# (name, keywords) per tiny model; TNT at both strides a 4 px patch allows, and legacy.
TINY = {
    "mixer": ("mixer_s16_224", MIXER_TINY),
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


@pytest.mark.parametrize("name", sorted(TIMM_PARAM_COUNTS))
def test_param_count_matches_timm(name):
    abstract = jaxvit.abstract_model(name)
    assert param_count(abstract) == TIMM_PARAM_COUNTS[name]


def test_counts_are_timms():
    timm = pytest.importorskip("timm", reason="timm is not installed: the counts stay unchecked")
    torch = pytest.importorskip("torch", reason="torch is not installed: the counts stay unchecked")
    with torch.device("meta"):  # no memory, no init
        got = {n: sum(p.numel() for p in timm.create_model(n).parameters()) for n in TIMM_PARAM_COUNTS}
    assert got == TIMM_PARAM_COUNTS


def test_names_families_and_cfgs():
    assert jaxvit.list_models(family="mixer") == sorted(n for n in TIMM_PARAM_COUNTS if "mixer" in n)
    assert jaxvit.list_models(family="tnt") == sorted(n for n in TIMM_PARAM_COUNTS if "tnt" in n)
    for name in TIMM_PARAM_COUNTS:
        cfg = get_entry(name).default_cfg
        assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5), name
        assert cfg["crop_pct"] == (0.875 if "mixer" in name else 0.9), name


# timm 1.0.31's register_model_deprecations in mlp_mixer.py.
MIXER_ALIASES = {
    "mixer_b16_224_in21k": "mixer_b16_224.goog_in21k_ft_in1k",
    "mixer_l16_224_in21k": "mixer_l16_224.goog_in21k_ft_in1k",
    "mixer_b16_224_miil": "mixer_b16_224.miil_in21k_ft_in1k",
    "mixer_b16_224_miil_in21k": "mixer_b16_224.miil_in21k",
}


def test_legacy_aliases_resolve():
    for alias, target in MIXER_ALIASES.items():
        assert split_name(alias) == tuple(target.split(".")), alias
    m = jaxvit.abstract_model("mixer_b16_224_miil", **MIXER_TINY)
    assert m.pretrained_cfg["architecture"] == "mixer_b16_224"
    assert m.pretrained_cfg["tag"] == "miil_in21k_ft_in1k"
    assert m.head.kernel.shape == (32, 10)


def test_aliases_are_timms():
    pytest.importorskip("timm", reason="timm is not installed: the alias list stays unchecked")
    from timm.models import get_deprecated_models

    timm_mixer = {k: v for k, v in get_deprecated_models("mlp_mixer").items() if k.startswith("mixer_")}
    assert timm_mixer == MIXER_ALIASES


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


@pytest.mark.parametrize("key", ["mixer", "tnt-stride2"])
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


# --- parity with timm ------------------------------------------------------------------


def test_unfold_order_is_torch_unfold():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from jaxvit.models.tnt import _unfold

    x = np.random.RandomState(0).randn(2, 3, 14, 11).astype(np.float32)  # leftover rows/cols
    ref = torch.nn.functional.unfold(torch.from_numpy(x), kernel_size=(4, 3), stride=(4, 3))
    ref = ref.transpose(1, 2).reshape(-1, 3, 4, 3).numpy()  # timm's (B*L, C, kh, kw)
    got = np.asarray(_unfold(jnp.asarray(x.transpose(0, 2, 3, 1)), (4, 3)))
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), ref)


def timm_tiny(name: str, kwargs: dict, noise: float = 0.2):
    """timm's model (eval) with seeded noise on every tensor, so logits are O(1) and a
    mis-mapped tensor shows. timm's mixer entry points fix patch/width, so the tiny
    mixer is built from its class."""
    import timm
    import torch
    from timm.models.mlp_mixer import MlpMixer

    torch.manual_seed(0)
    model = MlpMixer(**kwargs) if name.startswith("mixer") else timm.create_model(name, **kwargs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in model.state_dict().values():
            t.add_(torch.randn(t.shape, generator=gen) * noise)
    return model.eval()


def with_timm_weights(name: str, kwargs: dict):
    """(jaxvit model holding a perturbed timm model's weights, timm model); without
    torch, timm or the converter, a fresh jaxvit model and None."""
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401

        from convert import convert_state_dict
    except ImportError:
        return jaxvit.create_model(name, **kwargs), None

    tmodel = timm_tiny(name, kwargs)
    jmodel, _ = convert_state_dict(name, tmodel.state_dict(), log=lambda _: None, **kwargs)
    return jmodel, tmodel


@pytest.mark.parametrize("key", sorted(TINY))
def test_tiny_shapes_and_logits_match_timm(key):
    """Shapes of each tiny variant; with timm installed, its logits in fp32 eval mode
    (weights moved through convert.convert_state_dict) within 1e-4."""
    name, kwargs = TINY[key]
    jmodel, tmodel = with_timm_weights(name, kwargs)
    jmodel.eval()
    x = np.asarray(batch(), np.float32)
    feats, pooled, got = (np.asarray(y) for y in features_pooled_logits(jmodel, x))
    tokens = (32 // kwargs["patch_size"]) ** 2 + (0 if name.startswith("mixer") else 1)
    assert (feats.shape, pooled.shape, got.shape) == ((2, tokens, 32), (2, 32), (2, 10))
    if tmodel is None:
        pytest.skip("torch, timm or convert/ missing: shapes checked, logits parity not")
    import torch

    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(expected).max() > 0.1, "logits too small for the check to mean much"
    diff = float(np.abs(got - expected).max())
    print(f"{key}: max |logits diff| {diff:.2e} (|logits| up to {np.abs(expected).max():.2f})")
    assert diff <= 1e-4
