"""Model construction, timm's interface and names, dtypes and train/eval behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from flax import nnx

import jaxvit


# Compiled forwards: eagerly each op compiles on its own (a 2-block ViT's forward ~2-3 s here).
@nnx.jit
def forward(m, x):
    return m(x)


@nnx.jit
def forward_features(m, x):
    return m.forward_features(x)


def test_required_names_are_listed():
    required = {
        "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
        "vit_base_patch32_224", "vit_large_patch16_224", "deit_tiny_patch16_224",
        "deit_small_patch16_224", "deit_base_patch16_224", "deit_tiny_distilled_patch16_224",
        "deit_small_distilled_patch16_224", "deit_base_distilled_patch16_224",
    }
    assert required <= set(jaxvit.list_models())
    distilled = sorted(n for n in required if "distilled" in n) + ["deit_base_distilled_patch16_384"]
    assert jaxvit.list_models("deit_*_distilled*") == sorted(distilled)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean .*'vit_tiny_patch16_224'"):
        jaxvit.create_model("vit_tiny_patch16_244")


def test_name_of_another_architecture_says_jaxvit_does_not_carry_it():
    """timm's convnext_tiny is not a typo of a jaxvit name: no near-miss suggestions for it."""
    for name in ("convnext_tiny", "resnet50", "efficientnet_b0.ra_in1k"):
        with pytest.raises(ValueError, match="jaxvit does not carry this architecture") as e:
            jaxvit.create_model(name)
        assert "did you mean" not in str(e.value) and "vit_" in str(e.value)
    with pytest.raises(ValueError, match="did you mean 'vit_tiny_patch16_224'"):  # a typo of the first word
        jaxvit.create_model("vitt_tiny_patch16_224")


def test_pretrained_points_to_converter():
    with pytest.raises(ValueError, match="python -m convert"):
        jaxvit.create_model("vit_tiny_patch16_224", pretrained=True)


def test_tag_is_accepted():
    m = jaxvit.create_model("vit_tiny_patch16_224.augreg_in21k", num_classes=3, img_size=32, patch_size=8, depth=1)
    assert m.pretrained_cfg["tag"] == "augreg_in21k"
    assert m(jnp.zeros((1, 32, 32, 3))).shape == (1, 3)


@pytest.mark.parametrize("img_size,patch_size", [(32, 2), (64, 4)])
def test_seed_recipe_sizes(img_size, patch_size):
    # seed 004 trains vit_tiny_patch16_224 at 32px/patch 2 and 64px/patch 4
    m = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=img_size,
                            patch_size=patch_size, depth=1)
    grid = img_size // patch_size
    assert m.pos_embed.shape == (1, grid * grid + 1, 192)
    assert m.patch_embed.proj.kernel.shape == (patch_size, patch_size, 3, 192)
    assert m(jnp.zeros((2, img_size, img_size, 3))).shape == (2, 10)


def test_wrong_input_size_names_the_fix():
    m = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, depth=1)
    with pytest.raises(ValueError, match="img_size=64"):
        m(jnp.zeros((1, 64, 64, 3)))


def test_timm_attribute_tree():
    m = jaxvit.create_model("deit_tiny_distilled_patch16_224", num_classes=5, img_size=32, depth=2)
    flat = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))}
    for key in ["patch_embed.proj.kernel", "cls_token", "dist_token", "pos_embed",
                "blocks.1.attn.qkv.kernel", "blocks.1.attn.proj.bias", "blocks.0.mlp.fc1.kernel",
                "blocks.0.mlp.fc2.bias", "blocks.0.norm1.scale", "norm.scale", "head.kernel",
                "head_dist.kernel"]:
        assert key in flat, key


def test_distilled_eval_averages_heads():
    m = jaxvit.create_model("deit_tiny_distilled_patch16_224", num_classes=4, img_size=32, depth=1)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    feats = m.forward_features(x)
    expected = (m.head(feats[:, 0]) + m.head_dist(feats[:, 1])) / 2
    np.testing.assert_allclose(m(x), expected, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params():
    m = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4,
                            depth=2, dtype="bfloat16")
    assert {x.dtype for x in jax.tree.leaves(nnx.state(m, nnx.Param))} == {jnp.dtype("float32")}
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    feats = forward_features(m, x)
    assert feats.dtype == jnp.bfloat16
    logits = forward(m, x)
    assert logits.dtype == jnp.float32
    ref = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, depth=2)
    np.testing.assert_allclose(logits, forward(ref, x), atol=0.1)  # same init seed, bf16 rounding only


def test_drop_path_and_dropout_train_vs_eval():
    m = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8,
                            depth=2, drop_path_rate=0.5, drop_rate=0.5, attn_drop_rate=0.3)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    a, b = forward(m, x), forward(m, x)  # the RNG streams advance through nnx.jit as eagerly
    assert not np.allclose(a, b), "train mode must sample new masks each call"
    ev = nnx.view(m, deterministic=True)
    np.testing.assert_array_equal(forward(ev, x), forward(ev, x))
    assert m.blocks[1].drop_path1.rate == pytest.approx(0.5)  # linear rule: last block gets the rate
    assert m.blocks[0].drop_path1.rate == 0.0


def test_no_weight_decay():
    # (reset_classifier for every family: test_classifier.py)
    m = jaxvit.abstract_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8, depth=1)
    assert m.no_weight_decay() == {"pos_embed", "cls_token", "reg_token", "dist_token"}  # timm's set


def test_attention_matches_explicit_softmax():
    from jaxvit.layers import attention

    q, k, v = (jax.random.normal(jax.random.key(i), (2, 5, 3, 8)) for i in range(3))
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(8.0), axis=-1)
    expected = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    np.testing.assert_allclose(attention(q, k, v), expected, atol=1e-5)


def test_abstract_model_has_shapes_only_and_leaves_jax_as_it_was():
    """jaxvit.abstract_model: the model's structure with ShapeDtypeStructs for values; the
    tracer-probe work-around (jaxvit/_compat.py) is undone on the way out, errors included."""
    from jax._src import core

    from jaxvit._compat import quick_tracer_probes

    before = core.Tracer.__dict__.get("sharding")
    model = jaxvit.abstract_model("vit_tiny_patch16_224", num_classes=7)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    assert model.head.kernel.shape == (192, 7)
    assert core.Tracer.__dict__.get("sharding") is before
    with pytest.raises(RuntimeError):
        with quick_tracer_probes():
            jax.eval_shape(lambda x: getattr(x, "sharding", None) is None or 1 / 0, 1.0)
            raise RuntimeError("inside")
    assert core.Tracer.__dict__.get("sharding") is before
    # reentrant (a model's __call__ inside an abstract build): JAX's own is back at the outermost exit
    with quick_tracer_probes():
        inside = core.Tracer.__dict__.get("sharding")
        with quick_tracer_probes():
            pass
        assert core.Tracer.__dict__.get("sharding") is inside
    assert core.Tracer.__dict__.get("sharding") is before


def test_readme_coverage_table_is_what_the_script_prints():
    """The README's per-module coverage is `python -m convert.coverage`'s table, computed from
    timm's registry and jaxvit's: a name registered (or added to timm) without the README
    updated fails here."""
    pytest.importorskip("timm", reason="the coverage counts need timm: pip install -e '.[torch]'")

    from convert.coverage import BEGIN, END, coverage, table

    readme = (ROOT / "README.md").read_text()
    shown = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    cov = coverage()
    assert shown == table(cov), "README out of date: paste `python -m convert.coverage` between its markers"
    have = {n for h, _ in cov.values() for n in h}
    assert "vit_base_patch16_224" in have and "convnext_tiny" not in have
