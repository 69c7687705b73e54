"""timm's feature interface against timm: ``forward_intermediates`` (indices, norm, prefix
tokens, output formats), ``create_model(features_only=True)`` (its outputs and feature_info),
``num_classes=0`` pooled embeddings, and bad indices. Same perturbed weights in both models,
through ``convert``, as tests/convert/test_convert.py does; one jitted jaxvit call per family."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import perturbed_timm, timm_model, tiny_models
from flax import nnx

torch = pytest.importorskip("torch", reason="feature parity needs torch: pip install -e '.[torch]'")
pytest.importorskip("timm", reason="feature parity needs timm: pip install -e '.[torch]'")

import jaxvit  # noqa: E402
from convert import convert_state_dict  # noqa: E402
from jaxvit.models.features import features_only  # noqa: E402

# fp32, eval mode: measured max |diff| over every compared array of a case: MViTv2 2.3e-6, TnT
# 1.9e-6, Mixer 1.4e-6, ViT 7.2e-7 (with registers 4.8e-7), Swin 6.0e-7, Inception-v4 1.6e-7
# (2-core CPU, jax 0.10.2, timm 1.0.31, 2026-11-27); 1e-4 is over 40x the largest, as
# tests/convert/test_convert.py's logits bound.
TOL = 1e-4



def _tiny(name: str, **over) -> dict:
    return dict(tiny_models()[name], **over)


# Two blocks each (one taken, one pruned in features_only), non-square images where the family
# takes them (a swapped H and W would show), patches small enough for a grid of several tokens.
CASES = {
    "vit": ("vit_tiny_patch16_224", _tiny("vit_tiny_patch16_224", depth=2, patch_size=4, img_size=(16, 12))),
    # registers and no class token, average pooling (fc_norm: the final norm is timm's Identity)
    "vit_reg": ("vit_betwixt_patch16_reg4_gap_256",
                _tiny("vit_betwixt_patch16_reg4_gap_256", depth=2, patch_size=4, img_size=(16, 12))),
    "mixer": ("mixer_s16_224", _tiny("mixer_s16_224", num_blocks=2, patch_size=4, img_size=(16, 12))),
    "tnt": ("tnt_s_patch16_224", _tiny("tnt_s_patch16_224", depth=2, patch_size=4, first_stride=2,
                                       img_size=(16, 12))),
    "swin": ("swin_tiny_patch4_window7_224", _tiny("swin_tiny_patch4_window7_224", img_size=(16, 12))),
    # relative positions need a square map (as timm)
    "mvitv2": ("mvitv2_tiny", _tiny("mvitv2_tiny")),
    # a class token: dropped from the maps, kept in 'NLC' (as timm), pooled by 'token'
    "mvitv2_cls": ("mvitv2_tiny", _tiny("mvitv2_tiny", use_cls_token=True)),
    # fully convolutional: built at its 299 px (timm takes no img_size), run at the tiny size, 75
    "inception": ("inception_v4", {}),
}
SIZES = {"inception": (75, 75), "mvitv2": (32, 32), "mvitv2_cls": (32, 32)}
# (explicit indices, features_only out_indices): a negative index; features that end before the
# last block, so that pruning drops something. Inception-v4's stop early, at its stage 1 (the
# whole net compiled once more would cost ~5 s a forward here).
INDICES = {"inception": ([0, -4], (0, 1))}
DEFAULT_INDICES = ([0, -1], (0,))
TOKENS = ("vit", "vit_reg", "mixer", "tnt", "mvitv2", "mvitv2_cls")  # families with an 'NLC' layout
# what pruning shortens
STAGES = {"inception": "features", "swin": "layers", "mvitv2": "stages", "mvitv2_cls": "stages"}
# timm's FeatureListNet (Inception-v4's, Swin's) flattens its modules' names: features.N -> features_N
FLAT = {"inception_v4": "features.", "swin_tiny_patch4_window7_224": "layers."}
PREFIX = ("vit", "vit_reg", "tnt")  # families with prefix tokens


def _nchw(x) -> np.ndarray:
    return np.asarray(x).transpose(0, 3, 1, 2)


def _timm_features(name: str, tmodel, out_indices, kwargs):
    """timm's ``features_only`` model of ``name`` (its own wrapper class: FeatureGetterNet, or
    FeatureListNet for Inception-v4 and Swin) holding ``tmodel``'s weights."""
    tfeat = timm_model(name, features_only=True, out_indices=out_indices, **kwargs).eval()
    sd = tmodel.state_dict()
    if name in FLAT:  # FeatureListNet flattens features.N to features_N
        prefix = FLAT[name]
        target, sd = tfeat, {k.replace(prefix, prefix[:-1] + "_", 1): v for k, v in sd.items()}
    else:
        target = tfeat.model
    missing, _ = target.load_state_dict(sd, strict=False)
    assert not missing, missing
    return tfeat


@pytest.mark.parametrize("family", list(CASES))
def test_intermediates_and_features_match_timm(family):
    name, kwargs = CASES[family]
    indices, out_indices = INDICES.get(family, DEFAULT_INDICES)
    tmodel = perturbed_timm(name, **kwargs)
    tfeat = _timm_features(name, tmodel, out_indices, kwargs)
    jmodel, _ = convert_state_dict(name, tmodel.state_dict(), log=lambda _: None, **kwargs)
    jmodel.eval()
    jfeat = features_only(nnx.clone(jmodel), out_indices)
    h, w = SIZES.get(family, kwargs.get("img_size"))
    x = np.random.RandomState(0).uniform(-1, 1, (2, 3, h, w)).astype(np.float32)
    tokens = family in TOKENS
    nlc = dict(indices=1, output_fmt="NLC", intermediates_only=True, return_prefix_tokens=family in PREFIX)
    if family in ("mixer", "mvitv2", "mvitv2_cls"):  # no return_prefix_tokens (MViTv2's 'NLC' keeps its class token)
        del nlc["return_prefix_tokens"]
    # timm's Swin maps are NHWC (forward_intermediates gives NCHW), as its features_only (FeatureListNet)
    timm_nhwc = ("features",) if family == "swin" else ()

    with torch.no_grad():
        xt = torch.from_numpy(x)
        want = dict(zip(("final", "all"), tmodel.forward_intermediates(xt)))
        want["list"] = tmodel.forward_intermediates(xt, indices=indices, norm=True, intermediates_only=True)
        want["nlc"] = tmodel.forward_intermediates(xt, **nlc) if tokens else []
        want["features"] = tfeat(xt)
        tmodel.reset_classifier(0)
        want["pooled"] = tmodel(xt)

    @nnx.jit
    def run(m, fm, x):
        out = dict(zip(("final", "all"), m.forward_intermediates(x)))  # NHWC: jaxvit's default
        out["list"] = m.forward_intermediates(x, indices, norm=True, stop_early=True, output_fmt="NCHW",
                                              intermediates_only=True)
        out["nlc"] = m.forward_intermediates(x, **nlc) if tokens else []
        out["features"] = fm(x)
        return out

    got = run(jmodel, jfeat, x.transpose(0, 2, 3, 1))
    jmodel.reset_classifier(0)  # as create_model(name, num_classes=0) builds it: no head
    got["pooled"] = jmodel.forward_head(got["final"])  # its __call__: forward_features, then this

    diffs = {}

    def check(key, a, b):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, (key, a.shape, b.shape)
        diffs[key] = max(diffs.get(key, 0.0), float(np.abs(a - b).max()))

    # the final features are forward_features': tokens, or a map (Inception-v4's NCHW, Swin's NHWC)
    check("final", _nchw(got["final"]) if family == "inception" else got["final"], want["final"])
    for key in ("all", "list", "features", "nlc"):
        assert len(got[key]) == len(want[key]), key
        for a, b in zip(got[key], want[key]):
            pairs = zip(a, b) if key == "nlc" and nlc.get("return_prefix_tokens") else [(a, b)]
            for part_a, part_b in pairs:  # (patch tokens, prefix tokens)
                nchw = key in ("all", "features") and key not in timm_nhwc
                check(key, _nchw(part_a) if nchw else part_a, part_b)
    check("pooled", got["pooled"], want["pooled"])
    print(f"{family}: max |diff| " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs
    assert np.abs(np.asarray(want["all"][-1])).max() > 0.1  # the features carry signal
    assert len(got["all"]) == len(jmodel.feature_info) and got["pooled"].shape == (2, jmodel.num_features)

    assert jfeat.feature_info.channels() == tfeat.feature_info.channels()
    assert jfeat.feature_info.reduction() == tfeat.feature_info.reduction()
    assert jfeat.feature_info.module_name() == tfeat.feature_info.module_name()
    # pruned: what comes after the last feature taken is gone, the head too
    kept = getattr(jfeat.model, STAGES.get(family, "blocks"))
    assert len(kept) == (4 if family == "inception" else 1)  # Inception-v4's stage 1 ends at features.3
    assert jfeat.model.num_classes == 0


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "mixer_s16_224",
                                  "tnt_s_patch16_224", "inception_v4", "swin_tiny_patch4_window7_224",
                                  "mvitv2_tiny"])
def test_create_model_features_only_as_timm(name):
    """create_model's features_only as timm's, its default out_indices included (shapes only:
    abstract models); and num_classes=0, pooled embeddings."""
    kwargs = dict(tiny_models()[name])
    staged = "swin" in name or "mvitv2" in name  # timm's default: every stage (tiny: 2 and 4)
    if name != "inception_v4" and not staged:  # 4 blocks: timm's default takes the last 3
        kwargs.update({"num_blocks" if "mixer" in name else "depth": 4})
    ours = jaxvit.abstract_model(name, features_only=True, **kwargs)
    theirs = timm_model(name, features_only=True, **{k: v for k, v in kwargs.items() if name != "inception_v4"})
    assert list(ours.feature_info.out_indices) == list(theirs.feature_info.out_indices)
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    if name == "inception_v4":  # its maps are compared in test_intermediates_and_features_match_timm
        return
    size = kwargs["img_size"]
    shapes = nnx.eval_shape(lambda m: m(np.zeros((1, size, size, 3), np.float32)), ours)
    with torch.no_grad():
        want = [tuple(t.shape) for t in theirs.eval()(torch.zeros(1, 3, size, size))]
    nhwc = "swin" in name  # timm's Swin features are NHWC, as jaxvit's
    assert [s if nhwc else (s[0], s[3], s[1], s[2]) for s in (f.shape for f in shapes)] == want
    kept = ours.model.layers if "swin" in name else ours.model.stages if staged else ours.model.blocks
    assert len(kept) == len(theirs.feature_info) and ours.model.norm is None and ours.model.num_classes == 0

    headless = jaxvit.abstract_model(name, num_classes=0, **kwargs)
    assert headless.get_classifier() in (None, (None, None))
    pooled = nnx.eval_shape(lambda m: m(np.zeros((1, size, size, 3), np.float32)), headless)
    assert pooled.shape == (1, headless.num_features)


def test_bad_indices_are_one_clear_error():
    model = jaxvit.abstract_model("vit_tiny_patch16_224", **_tiny("vit_tiny_patch16_224", depth=2))
    x = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match=r"feature index 2 is out of range for 2 blocks: pass indices in 0\.\.1"):
        model.forward_intermediates(x, [0, 2])
    with pytest.raises(ValueError, match=r"indices=3 takes the last n of 2 blocks, n in 1\.\.2"):
        model.forward_intermediates(x, 3)
    with pytest.raises(ValueError, match=r"output_fmt 'NHCW' is not one of \('NHWC', 'NCHW', 'NLC'\)"):
        model.forward_intermediates(x, output_fmt="NHCW")
    with pytest.raises(ValueError, match=r"feature index -6 is out of range for 5 stages"):
        jaxvit.abstract_model("inception_v4", img_size=75, features_only=True, out_indices=(0, -6))
    swin = jaxvit.abstract_model("swin_tiny_patch4_window7_224", **_tiny("swin_tiny_patch4_window7_224"))
    with pytest.raises(ValueError, match=r"feature index 2 is out of range for 2 stages"):
        swin.forward_intermediates(x, [2])
    # a keyword of another family's (ViT's, TnT's), named as timm's signature would name it
    with pytest.raises(TypeError, match=r"SwinTransformer.forward_intermediates\(\) got an unexpected keyword "
                                        r"argument 'return_prefix_tokens'"):
        swin.forward_intermediates(x, return_prefix_tokens=True)
    with pytest.raises(ValueError, match="out_indices is for features_only=True"):
        jaxvit.create_model("vit_tiny_patch16_224", out_indices=(0,))
    with pytest.raises(ValueError, match="has no forward_intermediates"):
        jaxvit.abstract_model("perceiver_tiny", features_only=True)
