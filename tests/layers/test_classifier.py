"""The shared classifier (jaxvit/layers/classifier.py) and model base (jaxvit/models/base.py):
timm's pooling, and one classifier interface that every family answers the same way."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import filled_model, tiny_models
from flax import nnx

import jaxvit
from jaxvit.layers.classifier import POOL_TYPES, global_pool


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", "catavgmax"])
def test_nhwc_pooling_matches_timm(pool):
    torch = pytest.importorskip("torch")
    from timm.layers import SelectAdaptivePool2d

    x = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype(np.float32)
    theirs = SelectAdaptivePool2d(pool_type=pool, flatten=True, input_fmt="NHWC")(torch.from_numpy(x)).numpy()
    # the same fp32 reductions in another order: measured |d| <= 1.2e-7 over 20 random inputs of values ~1
    np.testing.assert_allclose(np.asarray(global_pool(jnp.asarray(x), pool)), theirs, rtol=0, atol=1e-6)


def test_token_pooling_leaves_out_the_prefix():
    x = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
    np.testing.assert_array_equal(global_pool(x, "token"), x[:, 0])
    np.testing.assert_array_equal(global_pool(x, "avg", num_prefix_tokens=2), x[:, 2:].mean(axis=1))
    np.testing.assert_array_equal(global_pool(x, "max", num_prefix_tokens=1), x[:, 1:].max(axis=1))
    assert global_pool(x, "") is x
    with pytest.raises(ValueError, match="global_pool must be one of"):
        global_pool(x, "gem")


@pytest.mark.parametrize("name", sorted(tiny_models()))
def test_every_family_has_one_classifier_interface(name):
    kwargs = tiny_models()[name]
    model = filled_model(name, num_classes=5, **kwargs)  # the interface, not the init
    model.eval()
    size = kwargs.get("img_size", 16)
    # the head alone, on random features of forward_features' shape (traced, not run)
    shape = nnx.eval_shape(lambda m: m.forward_features(jnp.zeros((2, size, size, 3))), model).shape
    feats = jax.random.normal(jax.random.key(0), shape)
    pooled, logits = model.forward_head(feats, pre_logits=True), model.forward_head(feats)
    assert pooled.dtype == logits.dtype == jnp.float32
    assert pooled.shape == (2, model.num_features if "perceiver_io" not in name else model.queries_dim)
    assert logits.shape == (2, 5)
    head = model.get_classifier()
    heads = head if isinstance(head, tuple) else (head,)
    assert all(isinstance(h, nnx.Linear) and h.kernel.shape[-1] == 5 for h in heads)

    model.reset_classifier(0)  # no classifier: the head returns what pre_logits gave
    assert model.num_classes == 0 and model.get_classifier() in (None, (None, None))
    np.testing.assert_array_equal(model.forward_head(feats), pooled)

    model.reset_classifier(7, rngs=nnx.Rngs(3))  # and back: a fresh head of the new size
    assert model.forward_head(feats).shape == (2, 7) and model.num_classes == 7

    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(3, global_pool="gem")
    assert model.num_classes == 7  # a refused pool changes nothing


def test_global_pool_choices_are_timm_s():
    m = jaxvit.create_model("mixer_s16_224", num_classes=4, **tiny_models()["mixer_s16_224"])
    m.reset_classifier(4, global_pool="")
    assert m.global_pool == "" and m.forward_head(jnp.ones((2, 16, 32))).shape == (2, 16, 4)
    with pytest.raises(ValueError, match=r"MlpMixer: global_pool must be one of \('', 'avg'\)"):
        m.reset_classifier(4, global_pool="token")
    gap = jaxvit.abstract_model("vit_medium_patch16_gap_256", depth=1)
    with pytest.raises(ValueError, match=r"global_pool='token' needs the class token \(class_token=True\)"):
        gap.reset_classifier(4, global_pool="token")
    with pytest.raises(ValueError, match="needs the class token"):
        jaxvit.abstract_model("vit_tiny_patch16_224", depth=1, class_token=False)
    siglip = jaxvit.create_model("vit_base_patch16_siglip_224", depth=1, embed_dim=32, num_heads=2, img_size=32)
    assert siglip.attn_pool is not None
    siglip.reset_classifier(4, global_pool="avg")  # as timm's: another pooling drops the attention pool
    assert siglip.attn_pool is None and siglip(jnp.zeros((1, 32, 32, 3))).shape == (1, 4)
    with pytest.raises(ValueError, match="cannot add attention pooling"):
        siglip.reset_classifier(4, global_pool="map")
    distilled = jaxvit.abstract_model("deit_tiny_distilled_patch16_224", depth=1)
    with pytest.raises(ValueError, match="distilled=True pools its class and distillation tokens"):
        distilled.reset_classifier(4, global_pool="avg")
    mvit = jaxvit.abstract_model("mvitv2_tiny")
    with pytest.raises(ValueError, match="needs the class token"):
        mvit.reset_classifier(4, global_pool="token")
    perceiver = jaxvit.abstract_model("perceiver_tiny")
    with pytest.raises(ValueError, match="pools in one fixed way"):
        perceiver.reset_classifier(4, global_pool="avg")
    assert set(jaxvit.abstract_model("swin_tiny_patch4_window7_224").pool_types) <= set(POOL_TYPES)
