"""timm -> jaxvit conversion: logits parity per model, export round trip, checkpoint
wrappers through the CLI, fine-tune adaptation against timm's own, and bad input."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="conversion tests need torch: pip install -e '.[torch]'")
timm = pytest.importorskip("timm", reason="conversion tests need timm: pip install -e '.[torch]'")

from conftest import ROOT, compiled_forward, perturbed_timm, timm_model  # noqa: E402

import jaxvit  # noqa: E402
from convert import ConversionError, convert_state_dict, save, timm_state_dict  # noqa: E402
from convert.__main__ import main as convert_main  # noqa: E402
from convert.export import export_checkpoint  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10-subset"
# jaxvit vs timm logits, fp32, eval mode: measured max |diff| 1.0e-6..1.9e-6 (ViT-Ti, Swin-T,
# Swin-B at depths (2,2,2,2), MViTv2-T; 2-core CPU, jax 0.10.2, 2026-11-27, with and without
# XLA optimization); over every case of the whole file 4.5e-8..1.03e-5, the largest on the
# unnormed features (|values| up to 10) of the C-RADIO towers at full width (2026-11-27, same
# machine); 1e-4 is 10x the largest. (Those figures are at full width; the ViT/DeiT names now
# run narrow, see WIDE below, where the features are smaller: all 208 cases passed, not re-measured.)
TOL = 1e-4

# Every registered name of these families is in PARITY_NAMES (checked below); append a
# family here together with its names.
PARITY_FAMILIES = ("vit", "mixer", "tnt", "swin", "mvitv2", "inception")
PARITY_NAMES = [
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_base_patch32_224",
    "vit_large_patch16_224",
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
    "deit_base_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "deit_small_distilled_patch16_224",
    "deit_base_distilled_patch16_224",
    # timm's other vision_transformer/deit names the ViT keywords build (jaxvit/models/vit_names.py)
    "vit_tiny_patch16_384", "vit_small_patch32_224", "vit_small_patch32_384", "vit_small_patch16_384",
    "vit_base_patch32_384", "vit_base_patch16_384", "vit_base_patch8_224", "vit_large_patch32_224",
    "vit_large_patch32_384", "vit_large_patch16_384", "vit_large_patch14_224", "vit_huge_patch14_224",
    "vit_giant_patch14_224", "vit_gigantic_patch14_224", "vit_small_patch16_36x1_224", "vit_base_patch32_plus_256",
    "vit_base_patch16_plus_240", "vit_base_patch16_gap_224", "vit_small_patch8_224", "vit_base_patch16_224_miil",
    "vit_medium_patch16_gap_240", "vit_medium_patch16_gap_256", "vit_medium_patch16_gap_384",
    "vit_betwixt_patch16_gap_256", "vit_huge_patch14_gap_224", "vit_huge_patch16_gap_448",
    "vit_giant_patch16_gap_224", "vit_xsmall_patch16_clip_224", "vit_medium_patch32_clip_224",
    "vit_medium_patch16_clip_224", "vit_betwixt_patch32_clip_224", "vit_base_patch32_clip_224",
    "vit_base_patch32_clip_256", "vit_base_patch32_clip_384", "vit_base_patch32_clip_448",
    "vit_base_patch16_clip_224", "vit_base_patch16_clip_384", "vit_base_patch16_plus_clip_240",
    "vit_huge_patch14_clip_224", "vit_huge_patch14_clip_336", "vit_huge_patch14_clip_378",
    "vit_giant_patch14_clip_224", "vit_gigantic_patch14_clip_224", "vit_gigantic_patch14_clip_378",
    "vit_large_patch14_clip_224", "vit_large_patch14_clip_336", "vit_base_patch32_clip_quickgelu_224",
    "vit_base_patch16_clip_quickgelu_224", "vit_large_patch14_clip_quickgelu_224",
    "vit_large_patch14_clip_quickgelu_336", "vit_huge_patch14_clip_quickgelu_224",
    "vit_huge_patch14_clip_quickgelu_378", "vit_gigantic_patch14_clip_quickgelu_224", "eva_large_patch14_196",
    "eva_large_patch14_336", "flexivit_small", "flexivit_base", "flexivit_large", "vit_small_patch14_dinov2",
    "vit_base_patch14_dinov2", "vit_large_patch14_dinov2", "vit_small_patch14_reg4_dinov2",
    "vit_base_patch14_reg4_dinov2", "vit_large_patch14_reg4_dinov2", "vit_base_patch14_reg1_tipsv2",
    "vit_large_patch14_reg1_tipsv2", "vit_so400m_patch14_reg1_tipsv2", "vit_base_patch32_siglip_gap_256",
    "vit_base_patch16_siglip_gap_224", "vit_base_patch16_siglip_gap_256", "vit_base_patch16_siglip_gap_384",
    "vit_base_patch16_siglip_gap_512", "vit_large_patch16_siglip_gap_256", "vit_large_patch16_siglip_gap_384",
    "vit_large_patch16_siglip_gap_512", "vit_so400m_patch14_siglip_gap_224", "vit_so400m_patch14_siglip_gap_378",
    "vit_so400m_patch14_siglip_gap_448", "vit_so400m_patch14_siglip_gap_896", "vit_so400m_patch16_siglip_gap_256",
    "vit_so400m_patch16_siglip_gap_384", "vit_so400m_patch16_siglip_gap_512", "vit_giantopt_patch16_siglip_gap_256",
    "vit_giantopt_patch16_siglip_gap_384", "vit_wee_patch16_reg1_gap_256", "vit_little_patch16_reg1_gap_256",
    "vit_little_patch16_reg4_gap_256", "vit_medium_patch16_reg1_gap_256", "vit_medium_patch16_reg4_gap_256",
    "vit_mediumd_patch16_reg4_gap_256", "vit_mediumd_patch16_reg4_gap_384", "vit_betwixt_patch16_reg1_gap_256",
    "vit_betwixt_patch16_reg4_gap_256", "vit_betwixt_patch16_reg4_gap_384", "vit_base_patch16_reg4_gap_256",
    "vit_so150m_patch16_reg4_gap_256", "vit_so150m_patch16_reg4_gap_384", "vit_so150m2_patch16_reg1_gap_256",
    "vit_so150m2_patch16_reg1_gap_384", "vit_so150m2_patch16_reg1_gap_448", "vit_base_patch16_radio_v3",
    "vit_large_patch16_radio_v3", "vit_huge_patch16_radio_v3", "vit_giant_patch16_radio_v3",
    "vit_so400m_patch16_radio_v4", "vit_huge_patch16_radio_v4", "vit_intern300m_patch14_448",
    "deit_base_patch16_384", "deit_base_distilled_patch16_384", "deit3_small_patch16_224", "deit3_small_patch16_384",
    "deit3_medium_patch16_224", "deit3_base_patch16_224", "deit3_base_patch16_384", "deit3_large_patch16_224",
    "deit3_large_patch16_384", "deit3_huge_patch14_224",
    # attention-pooled ('map') SigLIP towers
    "vit_base_patch32_siglip_256", "vit_base_patch16_siglip_224", "vit_base_patch16_siglip_256",
    "vit_base_patch16_siglip_384", "vit_base_patch16_siglip_512", "vit_large_patch16_siglip_256",
    "vit_large_patch16_siglip_384", "vit_large_patch16_siglip_512", "vit_so400m_patch14_siglip_224",
    "vit_so400m_patch14_siglip_378", "vit_so400m_patch16_siglip_256", "vit_so400m_patch16_siglip_384",
    "vit_so400m_patch16_siglip_512", "vit_giantopt_patch16_siglip_256", "vit_giantopt_patch16_siglip_384",
    "vit_so150m_patch16_reg4_map_256",
    # post-norm blocks; two parallel branches per block; BEiT-3's norms inside attention and MLP
    "vit_base_patch16_rpn_224", "vit_small_patch16_18x2_224", "vit_base_patch16_18x2_224",
    "beit3_base_patch16_224", "beit3_large_patch16_224", "beit3_giant_patch14_224",
    "beit3_giant_patch14_336",
    # ParallelScalingBlock (fused in_proj): with RMSNorm and qk_norm, and plain
    "vit_base_patch16_xp_224", "vit_large_patch14_xp_224", "vit_huge_patch14_xp_224", "vit_pwee_patch16_reg1_gap_256",
    # AIMv2: RMSNorm (also on the patch embedding), SwiGLU, no projection biases
    "aimv2_large_patch14_224", "aimv2_large_patch14_336", "aimv2_large_patch14_448", "aimv2_huge_patch14_224",
    "aimv2_huge_patch14_336", "aimv2_huge_patch14_448", "aimv2_1b_patch14_224", "aimv2_1b_patch14_336",
    "aimv2_1b_patch14_448", "aimv2_3b_patch14_224", "aimv2_3b_patch14_336", "aimv2_3b_patch14_448",
    # DINOv2/TIPSv2 giant: SwiGLU-packed MLPs
    "vit_giant_patch14_dinov2", "vit_giant_patch14_reg4_dinov2", "vit_giant_patch14_reg1_tipsv2",
    # so400m/14 at 384 px: 27 patches a side, the last 6 pixels unread (as timm's strided conv)
    "vit_so400m_patch14_siglip_384", "vit_so400m_patch14_siglip_gap_384",
    # differential attention in Blocks and in the parallel-scaling block
    "vit_dwee_patch16_reg1_gap_256", "vit_dlittle_patch16_reg1_gap_256", "vit_dpwee_patch16_reg1_gap_256",
    # timm's debug ViTs: dynamic_img_size, 'map' pooling with the register token (pool_include_prefix), RMSNorm
    "test_vit", "test_vit2", "test_vit3", "test_vit4",
    "mixer_s16_224",
    "mixer_s32_224",
    "mixer_b16_224",
    "mixer_b32_224",
    "mixer_l16_224",
    "mixer_l32_224",
    # timm's other MlpMixer names: GLU token/channel MLPs; ResMLP's Affine norms, token Linear and
    # layer scales; gMLP's gated MLP with its spatial gating unit
    "gmixer_12_224", "gmixer_24_224", "resmlp_12_224", "resmlp_24_224", "resmlp_36_224", "resmlp_big_24_224",
    "gmlp_ti16_224", "gmlp_s16_224", "gmlp_b16_224",
    "tnt_s_patch16_224",
    "tnt_s_legacy_patch16_224",
    "tnt_b_patch16_224",
    "swin_tiny_patch4_window7_224",
    "swin_small_patch4_window7_224",
    "swin_base_patch4_window7_224",
    "swin_base_patch4_window12_384",
    "swin_large_patch4_window7_224",
    "swin_large_patch4_window12_384",
    "swin_s3_tiny_224",  # Swin-S3: a window size per stage
    "swin_s3_small_224",
    "swin_s3_base_224",
    "mvitv2_tiny",
    "mvitv2_small",
    "mvitv2_base",
    "mvitv2_small_cls",
    "mvitv2_base_cls",  # the *_cls names below default to 19,168 classes (timm's fb_inw21k tag)
    "mvitv2_large",  # expand_attn=False: the width changes in the MLP
    "mvitv2_large_cls",
    "mvitv2_huge_cls",
    "inception_v4",  # fixed 299px in timm: default size only
]
# Depth, not width, is cut for parity where the full model would take tens of seconds: the
# rules are per layer type, so two blocks of ViT-L/16 exercise every rule its 24 do, at
# its full width and size. Each family's reduced depth keeps every kind of block: Swin two
# per stage (plain and shifted windows), MViTv2 its stage-first (pooling, dim change) and
# later blocks. Every name's full width and depth are checked by key and shape in
# test_full_size_tensors_and_default_cfg_match_timm (abstract models, no values), and the small names of
# each family run their parity at full depth.
# Keyed by registry family (DeiT, DeiT III, EVA, FlexiViT are the 'vit' family). Names whose
# default image is over MAX_PARITY_SIZE px run their parity at 224 px: the position table and
# token layout are per name and checked at 224, the full size by key and shape below.
REDUCED = {"vit": dict(depth=2), "mixer": dict(num_blocks=2), "tnt": dict(depth=2),
           "swin": dict(depths=(2, 2, 2, 2)), "mvitv2": dict(depths=(1, 2, 2, 1))}
MAX_PARITY_SIZE = 384
FULL_DEPTH = ("vit_tiny_patch16_224", "vit_small_patch16_224", "deit_tiny_patch16_224",
              "deit_small_patch16_224", "deit_tiny_distilled_patch16_224",
              "deit_small_distilled_patch16_224", "mixer_s16_224", "mixer_s32_224", "tnt_s_patch16_224",
              "tnt_s_legacy_patch16_224", "swin_tiny_patch4_window7_224", "mvitv2_tiny", "inception_v4")


def reduced(name: str) -> dict:
    return REDUCED[jaxvit.get_entry(name).family]


# ViT/DeiT names beyond these run narrow too (width 64, 4 heads; 96 where SwiGLU-packed MLPs
# need an even hidden width): a name's layer types and token layout do not depend on its width,
# its full width is checked by key and shape below, and at full width the ~160 names would
# build towers of up to 3B parameters per two blocks (AIMv2-3B), tens of minutes of the suite.
WIDE = ("vit_base_patch16_224", "vit_base_patch32_224", "vit_large_patch16_224", "deit_base_patch16_224",
        "deit_base_distilled_patch16_224")
# Swin and MViTv2 names run narrow as well, but Swin-T and MViTv2-T (full size, FULL_DEPTH):
# embed_dim 48 with each name's own heads (timm's constructor keyword for Swin; for MViTv2 a
# MultiScaleVitCfg field, see timm_model). What those names add (a window per stage, window 12 at
# 384 px, the class token, 19,168 classes, expand_attn=False, 3 heads) does not depend on the width,
# every layer type runs at full width in Swin-T and MViTv2-T, and the full widths are checked by key
# and shape below. (Swin-S/B/L and MViTv2-S/B/S-cls ran wide until 2026-11-28: those 7 cases took
# 32 s in one process, 22 s narrow.)
NARROW = {"swin": dict(embed_dim=48), "mvitv2": dict(embed_dim=48)}


# Mixer-family names that repeat a smaller sibling's layers at a larger width run narrow: gMLP-S/B
# at gMLP-Ti's 128 (the eager forward reuses its compiled ops: ~0.6 s a case instead of ~2),
# ResMLP-B/8 (784 tokens) at 64. The full widths are checked by key and shape below.
MIXER_NARROW = {"gmlp_s16_224": 128, "gmlp_b16_224": 128, "resmlp_big_24_224": 64}


def depth_kwargs(name: str) -> dict:
    if name in FULL_DEPTH:
        return {}
    big = jaxvit.get_entry(name).default_cfg["input_size"][0] > MAX_PARITY_SIZE
    kwargs = dict(reduced(name), **({"img_size": 224} if big else {}))
    family = jaxvit.get_entry(name).family
    if family == "vit" and name not in WIDE:
        kwargs.update(embed_dim=96 if "giant_patch14" in name and ("dinov2" in name or "tipsv2" in name) else 64,
                      num_heads=4)
    elif family in NARROW and name not in WIDE:
        kwargs.update(NARROW[family])
    if name in MIXER_NARROW:
        kwargs.update(embed_dim=MIXER_NARROW[name])
    return kwargs


# Every name at its default size. At 96px (112 for patch 14), at reduced depth, one name per
# family and per token layout: the size-dependent parts (position tables, windows, pooled grids,
# relative positions, pixel embeddings) are per family and layout, not per width preset: ViT at
# patch 16 and 32, DeiT with its distillation token, DeiT III's table without the class token,
# no class token, registers with and without table rows, CLIP's pre-norm. One patch-size change
# on a tiny model.
OTHER_SIZE = ["vit_tiny_patch16_224", "vit_base_patch32_224", "deit_tiny_distilled_patch16_224",
              "deit3_small_patch16_224", "vit_medium_patch16_gap_256", "vit_small_patch14_reg4_dinov2",
              "vit_so150m_patch16_reg4_gap_256", "vit_base_patch32_clip_224",
              "mixer_s32_224", "tnt_s_patch16_224", "swin_tiny_patch4_window7_224", "mvitv2_tiny"]
PARITY_CASES = [(n, depth_kwargs(n)) for n in PARITY_NAMES]
PARITY_CASES += [(n, {"img_size": 112 if "patch14" in n else 96, **reduced(n)}) for n in OTHER_SIZE]
PARITY_CASES.append(("vit_tiny_patch16_224", {"img_size": 64, "patch_size": 8}))
# ViT keywords no registered name combines this way: qk_norm; timm's norm placement for the
# other poolings (fc_norm after 'avg'/'avgmax', the final norm before 'token' without it);
# pool_include_prefix with averaging (test_vit3 has it with 'map')
PARITY_CASES += [("vit_tiny_patch16_224", dict(img_size=64, depth=2, **k)) for k in (
    {"qk_norm": True}, {"global_pool": "avg"}, {"global_pool": "avgmax", "class_token": False},
    {"global_pool": "avg", "fc_norm": False, "reg_tokens": 2}, {"pre_norm": True, "final_norm": False},
    {"global_pool": "avg", "reg_tokens": 2, "pool_include_prefix": True},  # the class and registers pooled too
)]
PARITY_CASES.append(("tnt_s_patch16_224", {"img_size": 32, "patch_size": 4, "first_stride": 1}))
# MlpMixer's stem_norm (no timm name sets it): the block's norm, here ResMLP's Affine, on the patches
PARITY_CASES.append(("resmlp_12_224", {"num_blocks": 2, "stem_norm": True}))
# Mixer and TnT, 2 blocks of width 32 at 32 px (tests/models/test_mixer_tnt.py's TINY): each
# Mixer block kind (gMixer's GLU, ResMLP's Affine and layer scale, gMLP's gating); TnT's pixel
# embedding at both strides a 4-px patch allows, the legacy unfold, and a 6-px patch (pixels left
# over) with average pooling
MIXER_32 = dict(img_size=32, patch_size=4, num_blocks=2, embed_dim=32, num_classes=10)
TNT_32 = dict(img_size=32, patch_size=4, inner_dim=8, embed_dim=32, depth=2, num_heads_inner=2,
              num_heads_outer=2, num_classes=10)
PARITY_CASES += [(n, MIXER_32) for n in ("mixer_s16_224", "gmixer_12_224", "resmlp_24_224", "gmlp_s16_224")]
PARITY_CASES += [("tnt_s_patch16_224", dict(TNT_32, first_stride=1)),
                 ("tnt_s_patch16_224", dict(TNT_32, first_stride=2)),
                 ("tnt_s_legacy_patch16_224", dict(TNT_32, first_stride=2)),
                 ("tnt_s_patch16_224", dict(TNT_32, patch_size=6, global_pool="avg"))]
# Swin windows no registered name has, two stages at 32 dims: clamped to the map (stage 1 at 32 px),
# shifted in every stage (64 px), padded where the window does not divide the map (48 px: 12->15, 6->10)
SWIN_SMALL_MAPS = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), num_classes=10)
PARITY_CASES += [("swin_tiny_patch4_window7_224", dict(SWIN_SMALL_MAPS, img_size=size, window_size=window))
                 for size, window in ((32, 4), (64, 4), (48, 5))]
# MViTv2: seed 004's 32-px CIFAR stem (3x3, stride 2; a block a stage), and the class token, absolute positions,
# max pooling and expand_attn=False (a width change in the MLP) together
PARITY_CASES += [
    ("mvitv2_tiny", dict(img_size=32, num_classes=10, depths=(1, 1, 1, 1), patch_kernel=(3, 3), patch_stride=(2, 2),
                         patch_padding=(1, 1))),
    ("mvitv2_tiny", dict(img_size=64, num_classes=5, depths=(1, 2, 1, 1), embed_dim=32, num_heads=2,
                         use_cls_token=True, use_abs_pos=True, mode="max", expand_attn=False)),
]


def case_id(kwargs: dict) -> str:
    def short(v):
        return "x".join(map(str, v)) if isinstance(v, tuple) else v

    return "-".join(f"{k.split('_')[0]}{short(v)}" for k, v in kwargs.items()) or "default"


# A ViT-family case whose model is that of a case before it runs once, as that case: the same
# jaxvit keywords (its name's row in vit_names.KEYWORDS with the case's own) and, checked in
# test_cases_run_once_build_timms_model_of_the_case_run, the same timm model (every module's
# type and settings, every tensor's shape). Narrow and at reduced depth, a size word no longer
# shows: vit_{tiny,small,base,large}_patch16_384 are one model; 52 of the 194 ViT-family cases
# (~0.5 s each here) are another's, 31 once SIZE_OF below has taken its share.
def _plain(v) -> object:
    """A setting as comparable plain data: tensors by shape, functions by name (no address)."""
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return ("tensor", tuple(v.shape), str(v.dtype))
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((str(k), _plain(x)) for k, x in v.items()))
    return re.sub(r" at 0x[0-9a-f]+", "", repr(v))


def _jaxvit_keywords(name: str, kwargs: dict):
    from jaxvit.models.vit_names import KEYWORDS

    return _plain({**KEYWORDS[name], **kwargs}) if name in KEYWORDS else None


# A name's own case (its row of PARITY_NAMES) that differs from a case run only in image size,
# patch size and class count runs once too (SIZE_OF): those set the position table's grid, the
# patch kernel and the head's width, which the OTHER_SIZE cases and the 64-px patch-8 case vary
# per token layout, and every name's own sizes are checked by key and shape in
# test_full_size_tensors_and_default_cfg_match_timm. A size the patch does not divide (pixels
# left unread) keeps its own case. Checked like SAME_AS, with the run case's sizes passed to
# timm for both names. 79 more cases (~0.6 s each here), which leaves 31 in SAME_AS (52 alone).
SIZE_KEYS = ("img_size", "patch_size", "num_classes")


def sizes(name: str, kwargs: dict) -> dict:
    """A ViT-family case's image size, patch size and class count, as timm's keywords."""
    from jaxvit.models.vit_names import KEYWORDS

    k = {"img_size": 224, "patch_size": 16, "num_classes": 1000, **KEYWORDS[name], **kwargs}
    return {key: k[key] for key in SIZE_KEYS}


def _keywords_but_sizes(name: str, kwargs: dict):
    from jaxvit.models.vit_names import KEYWORDS

    if name not in KEYWORDS:
        return None
    s = sizes(name, kwargs)
    ragged = any(i % p for i, p in zip(*(np.broadcast_to(s[k], 2) for k in ("img_size", "patch_size"))))
    return _plain({k: v for k, v in {**KEYWORDS[name], **kwargs}.items() if k not in SIZE_KEYS}), ragged


_first: dict = {}
_first_but_sizes: dict = {}
SAME_AS: list[tuple[tuple, tuple]] = []  # (a case left out, the case run in its place)
SIZE_OF: list[tuple[tuple, tuple]] = []  # the same, but for the sizes
RUN_CASES = []
# Inception-v4's one case (299 px, the converter's path) runs in tests/models/test_inception.py's
# test_logits_match_timm_in_eval_mode, against a stronger timm model (running statistics of real
# activations; every stage's features compared too): ~8 s here for nothing more.
ELSEWHERE = [("inception_v4", {})]
for _i, _case in enumerate(PARITY_CASES):
    if _case in ELSEWHERE:
        continue
    _key, _size_key = _jaxvit_keywords(*_case), _keywords_but_sizes(*_case)
    if _key is not None and _key in _first:
        SAME_AS.append((_case, _first[_key]))
    elif _size_key is not None and _size_key in _first_but_sizes and _i < len(PARITY_NAMES):
        SIZE_OF.append((_case, _first_but_sizes[_size_key]))
    else:
        if _key is not None:
            _first[_key] = _case
            _first_but_sizes.setdefault(_size_key, _case)
        RUN_CASES.append(_case)


def quiet(_: str) -> None:
    pass


def images(size: int, n: int = 2) -> np.ndarray:
    """n real CIFAR-10 images (one per class) resized to ``size``, NCHW in [-1, 1] (a copy of a
    cached batch); a fixed random batch where the shared data is absent."""
    return _images(size, n).copy()


@functools.cache
def _images(size: int, n: int) -> np.ndarray:
    classes = sorted((CIFAR / "train").glob("*"))[:n]
    if len(classes) < n:
        return np.random.RandomState(0).uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    from PIL import Image

    batch = [
        np.asarray(Image.open(sorted(c.glob("*.png"))[0]).convert("RGB").resize((size, size), Image.BICUBIC))
        for c in classes
    ]
    x = np.stack(batch).astype(np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(0, 3, 1, 2).copy()


def logits(tmodel: torch.nn.Module | None, jmodel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(timm, jaxvit) logits for an NCHW batch; jaxvit runs on NHWC, jitted: one compile of the
    forward (~0.3-0.6 s at -O0 here) costs less than eager's per-op compiles, even for ViT
    (75 ViT/Mixer cases of this file, one process: 105 s eager, 72 s jitted, with ~7 s of
    collection in both)."""
    with torch.no_grad():
        yt = tmodel(torch.from_numpy(x)).numpy() if tmodel is not None else None
    jmodel.eval()
    return yt, np.asarray(compiled_forward(jmodel)(x.transpose(0, 2, 3, 1)))


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def test_parity_list_covers_its_families():
    """A name registered in a family covered here cannot miss the parity test."""
    missing = sorted({n for f in PARITY_FAMILIES for n in jaxvit.list_models(family=f)} - set(PARITY_NAMES))
    assert not missing, f"add these registered models to PARITY_NAMES: {missing}"


@pytest.mark.parametrize("name,kwargs", [pytest.param(n, k, id=f"{n}-{case_id(k)}") for n, k in RUN_CASES])
def test_logits_match_timm(name, kwargs):
    tmodel = perturbed_timm(name, **kwargs)
    jmodel, meta = convert_state_dict(name, tmodel.state_dict(), log=quiet, **kwargs)
    assert meta["kwargs"].items() >= kwargs.items()
    size = kwargs.get("img_size", tmodel.pretrained_cfg["input_size"][-1])  # 384 for *_384 names
    yt, yj = logits(tmodel, jmodel, images(size))
    diff = max_diff(yt, yj)
    print(f"{name} {kwargs}: max |logits diff| {diff:.2e} (|logits| up to {np.abs(yt).max():.2f})")
    assert diff <= TOL


def timm_settings(name: str, **kwargs) -> tuple:
    """timm's model for ``name`` as plain data: each module's path, type and settings (its
    public attributes but the pretrained cfg, which parity does not read), each tensor's shape."""
    model = timm_on_meta(name, **kwargs)
    skip = {"training", "pretrained_cfg", "default_cfg", "pretrained_cfg_overlay"}
    modules = [(path, f"{type(m).__module__}.{type(m).__qualname__}",
                _plain({k: v for k, v in vars(m).items() if not k.startswith("_") and k not in skip}))
               for path, m in model.named_modules()]
    return tuple(modules), _plain(model.state_dict())


def test_cases_run_once_build_timms_model_of_the_case_run():
    """Each parity case left out (SAME_AS) builds timm's model of the case run in its place
    (jaxvit's is the same by construction: equal keywords), so that case's parity is its own;
    one left out for its sizes only (SIZE_OF) does, given the sizes of the case run.
    The comparison sees what a name changes in timm: an activation, qk_norm, a pooling, a rate."""
    assert len(SAME_AS) >= 25, len(SAME_AS)  # 31 here: the narrow ViT names
    for (name, kwargs), (run, run_kwargs) in SAME_AS:
        assert timm_settings(name, **kwargs) == timm_settings(run, **run_kwargs), (name, kwargs, run)
    assert len(SIZE_OF) >= 70, len(SIZE_OF)  # 79 here
    for (name, kwargs), (run, run_kwargs) in SIZE_OF:
        run_sizes = sizes(run, run_kwargs)
        assert timm_settings(name, **{**kwargs, **run_sizes}) == timm_settings(run, **{**run_kwargs, **run_sizes}), (
            name, kwargs, run)
    narrow = dict(depth=2, embed_dim=64, num_heads=4)
    plain = timm_settings("vit_base_patch16_clip_224", **narrow)
    assert plain != timm_settings("vit_base_patch16_clip_quickgelu_224", **narrow)
    for change in ({"qk_norm": True}, {"global_pool": "avg"}, {"proj_drop_rate": 0.1}, {"img_size": 192}):
        assert plain != timm_settings("vit_base_patch16_clip_224", **narrow, **change), change


@pytest.mark.parametrize("name,kwargs", [
    ("vit_intern300m_patch14_448", {"img_size": 112, "depth": 2}),  # registered with dynamic_img_size
    ("deit3_small_patch16_224", {"img_size": 64, "depth": 2, "dynamic_img_size": True}),  # no_embed_class
    ("test_vit2", {"depth": 2}),  # registered with it, at 160 px: a register token's row in the table
])
def test_dynamic_img_size_matches_timm(name, kwargs):
    """dynamic_img_size: inputs of other sizes than built, the position table resampled in the
    forward pass as timm's; a side the patch does not divide is one clear error."""
    tmodel = perturbed_timm(name, **kwargs)
    jmodel, _ = convert_state_dict(name, tmodel.state_dict(), log=quiet, **kwargs)
    patch = jmodel.patch_embed.patch_size[0]
    for grid in (3, 6, 11):  # smaller and larger grids than the built one, and the built one's
        yt, yj = logits(tmodel, jmodel, images(grid * patch))
        assert max_diff(yt, yj) <= TOL, grid
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        jmodel(np.zeros((1, 5 * patch + 1, 5 * patch, 3), np.float32))


def timm_on_meta(name: str, **kwargs):
    """timm's model as shapes (the meta device), its initializers skipped where timm's
    constructor takes ``weight_init="skip"`` (ViT, DeiT, Swin): they ran on meta tensors for
    nothing, ~0.3 s of the ~0.75 s of each check here. MViTv2's depths are a config field
    (conftest's timm_model)."""
    if name.startswith("mvitv2_") and kwargs:
        with torch.device("meta"):
            return timm_model(name, **kwargs)
    try:
        return timm.create_model(name, pretrained=False, device="meta", weight_init="skip", **kwargs)
    except TypeError:  # a constructor without that keyword
        return timm.create_model(name, pretrained=False, device="meta", **kwargs)


def registered_keywords(name: str) -> dict:
    """The keywords ``jaxvit.create_model(name)`` builds its model class with (the name's
    defaults), read without building it: the family module's ``build`` answers with them."""
    from unittest import mock

    entry = jaxvit.get_entry(name)
    with mock.patch.object(sys.modules[entry.fn.__module__], "build", lambda cls, defaults, kwargs: defaults):
        return entry.fn()


def timm_depths(name: str) -> tuple[int, ...]:
    """Blocks per stage of timm's model for ``name``."""
    if name.startswith("mvitv2_"):
        from timm.models.mvitv2 import model_cfgs

        return tuple(model_cfgs[name].depths)
    return tuple(len(layer.blocks) for layer in timm_on_meta(name).layers)


@pytest.mark.parametrize("name", PARITY_NAMES)
def test_full_size_tensors_and_default_cfg_match_timm(name):
    """Every tensor of the full-size model, by timm key and torch shape, is one the converter
    places (abstract models on both sides: shapes, no values), so the reduced-depth parity
    above stands for the whole model; and the name's default cfg is timm's.

    A ViT-family name is a row of keywords (jaxvit/models/vit_names.py) and its blocks are alike:
    its depth is compared with timm's block count, its tensors at full width on one block (an
    abstract ViT costs ~0.04 s a block to build: at full depth the ViT-family names took 137 s of
    this test's 196 s in the suite; all 215 names now take 60 s in one process, 2026-11-28).
    Swin and MViTv2 alike: each stage's depth compared with timm's, the tensors at full width on
    at most two blocks a stage (the first one, which changes the width or the resolution, and a
    later one; Swin's second is its shifted block). At full depth the 17 names took 43 s of the
    suite (MViTv2-H: 7.5 s, 80 blocks), ~0.15 s a block. The other families are compared at full
    size."""
    from convert.rules import _is_ignored, plan
    from jaxvit.models import vit_names

    kwargs = {}
    family = jaxvit.get_entry(name).family
    if name in vit_names.KEYWORDS:
        assert vit_names.KEYWORDS[name]["depth"] == len(timm_on_meta(name).blocks)
        kwargs = dict(depth=1)
    elif family in ("swin", "mvitv2"):
        depths = tuple(registered_keywords(name)["depths"])
        assert depths == timm_depths(name), name
        kwargs = dict(depths=tuple(min(d, 2) for d in depths))
    model = jaxvit.abstract_model(name, **kwargs)
    ours = {e.torch_key: e.torch_shape for e in plan(model)}
    sd = timm_on_meta(name, **kwargs).state_dict()
    theirs = {k: tuple(v.shape) for k, v in sd.items() if not _is_ignored(k)}
    assert sorted(set(theirs) - set(ours)) == [] and sorted(set(ours) - set(theirs)) == []
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}
    # The preprocessing and the defaults (image size, classes) are those of timm's default
    # pretrained cfg for the name (its first tag).
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    default = jaxvit.get_entry(name).default_cfg
    c, h, w = cfg["input_size"]
    assert tuple(default["input_size"]) == (h, w, c)
    for key in ("crop_pct", "interpolation"):
        assert default[key] == cfg[key], key
    for key in ("mean", "std"):
        assert tuple(default[key]) == tuple(cfg[key]), key
    assert model.num_classes == default.get("num_classes", model.num_classes) == cfg["num_classes"]
    if hasattr(model, "patch_embed"):
        assert model.patch_embed.img_size == (h, w)


@pytest.mark.parametrize("name,kwargs", [
    ("deit_tiny_distilled_patch16_224", {"img_size": 64, "num_classes": 7}),
    # layer scale (blocks.N.ls1.gamma) and a table without the class token's row
    ("deit3_small_patch16_224", {"img_size": 64, "num_classes": 7, "depth": 2}),
    # no class token, registers, fc_norm after the pool
    ("vit_betwixt_patch16_reg4_gap_256", {"img_size": 64, "num_classes": 7, "depth": 2}),
    # GluMlp; Affine (1, 1, dim) alpha/beta and ls1/ls2 parameters; the spatial gating unit's norm and proj
    ("gmixer_12_224", {"img_size": 64, "num_classes": 7, "num_blocks": 2}),
    ("resmlp_24_224", {"img_size": 64, "num_classes": 7, "num_blocks": 2}),
    ("gmlp_s16_224", {"img_size": 64, "num_classes": 7, "num_blocks": 2}),
    # differential attention's lambdas and sub_norm; RMSNorm everywhere with dynamic_img_size
    ("vit_dwee_patch16_reg1_gap_256", {"img_size": 64, "num_classes": 7, "depth": 2}),
    ("test_vit4", {"img_size": 64, "num_classes": 7, "depth": 2}),
    # Swin (a Swin-S3 name: its windows (7, 7, 14, 7) clamp to the 64-px maps, 7, 7, 4, 2); MViTv2's
    # class token, pooling convs and relative-position tables
    ("swin_s3_tiny_224", {"img_size": 64, "num_classes": 7, "depths": (2, 2, 2, 2), "embed_dim": 48}),
    ("mvitv2_base_cls", {"img_size": 64, "num_classes": 7, "depths": (1, 2, 1, 1), "embed_dim": 48}),
])
def test_export_round_trip_loads_strict_in_timm(tmp_path, name, kwargs):
    """jaxvit checkpoint -> safetensors -> timm strict load: same tensors, same logits."""
    tmodel = perturbed_timm(name, **kwargs)
    jmodel, meta = convert_state_dict(name, tmodel.state_dict(), log=quiet, **kwargs)
    save(str(tmp_path / "ckpt"), jmodel, meta)
    # create_model fills img_size/num_classes from the checkpoint's meta.
    reloaded = jaxvit.create_model(name, checkpoint=str(tmp_path / "ckpt"))
    out = tmp_path / "exported.safetensors"
    got_name, got_kwargs = export_checkpoint(str(tmp_path / "ckpt"), str(out))
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}  # meta is JSON
    assert got_name == name and got_kwargs.items() >= as_json.items()

    from safetensors.torch import load_file

    sd = load_file(str(out))
    fresh = timm_model(name, **got_kwargs).eval()  # MViTv2: depths and width through its cfg table
    fresh.load_state_dict(sd, strict=True)
    for key, value in tmodel.state_dict().items():
        assert torch.equal(sd[key], value), key
    x = images(64)
    yt, yj = logits(fresh, reloaded, x)
    assert max_diff(yt, yj) <= TOL


def test_moco_wrapped_checkpoint_through_cli(tmp_path, capsys):
    """{'model': sd} with MoCo v3's module.base_encoder. prefix and momentum/predictor
    tensors converts through `python -m convert`'s main and keeps the logits."""
    name = "vit_tiny_patch16_224"
    tmodel = perturbed_timm(name, img_size=64)
    sd = {f"module.base_encoder.{k}": v for k, v in tmodel.state_dict().items()}
    sd.update({f"module.momentum_encoder.{k}": v for k, v in list(tmodel.state_dict().items())[:3]})
    sd["module.predictor.0.weight"] = torch.zeros(4, 192)
    torch.save({"model": sd, "epoch": 300, "arch": "vit_tiny"}, tmp_path / "moco.pth.tar")

    out = tmp_path / "converted"
    capsys.readouterr()
    assert convert_main(["--model", name, "--checkpoint", str(tmp_path / "moco.pth.tar"), "--out", str(out),
                         "--img-size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "momentum_encoder and predictor" in printed and "'module.base_encoder.'" in printed
    jmodel = jaxvit.create_model(name, checkpoint=str(out))
    yt, yj = logits(tmodel, jmodel, images(64))
    assert max_diff(yt, yj) <= TOL


@pytest.mark.parametrize(
    "name,kwargs",
    [
        pytest.param("vit_tiny_patch16_224", {"num_classes": 10, "img_size": 32}, id="classes10-img32-grid2"),
        pytest.param("vit_tiny_patch16_224", {"num_classes": 10, "img_size": 64, "patch_size": 8},
                     id="classes10-img64-patch8"),
        # a table without the class token's row, and registers with and without rows
        pytest.param("deit3_small_patch16_224", {"num_classes": 10, "img_size": 64, "depth": 2},
                     id="deit3-classes10-img64"),
        pytest.param("vit_small_patch14_reg4_dinov2", {"num_classes": 10, "img_size": 56, "depth": 2},
                     id="dinov2reg4-classes10-img56"),
        pytest.param("vit_so150m_patch16_reg4_gap_256", {"num_classes": 10, "img_size": 64, "depth": 2},
                     id="so150mreg4-classes10-img64"),
    ],
)
def test_finetune_adaptation_matches_timm(name, kwargs):
    """A checkpoint at the name's default size and classes into a smaller fine-tune model: a
    new head (reported), and pos_embed/patch kernel/features as timm's own pretrained filter gives."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    depth = {k: v for k, v in kwargs.items() if k == "depth"}
    source = perturbed_timm(name, **depth).state_dict()
    notes: list[str] = []
    jmodel, meta = convert_state_dict(name, source, log=notes.append, **kwargs)
    assert any(n.startswith("head:") and "initialized" in n for n in notes), notes  # re- or newly
    assert meta["reinitialized"] == ["head.bias", "head.weight"]
    fresh_head = jaxvit.create_model(name, **kwargs).head
    np.testing.assert_array_equal(np.asarray(jmodel.head.kernel[...]), np.asarray(fresh_head.kernel[...]))

    target = timm.create_model(name, pretrained=False, **kwargs).eval()
    filtered = checkpoint_filter_fn(dict(source), target)
    filtered = {k: v for k, v in filtered.items() if not k.startswith("head.")}
    assert set(target.load_state_dict(filtered, strict=False).missing_keys) == {"head.weight", "head.bias"}
    assert max_diff(np.asarray(jmodel.pos_embed[...]), filtered["pos_embed"].numpy()) <= 1e-6
    kernel = filtered["patch_embed.proj.weight"].numpy().transpose(2, 3, 1, 0)
    assert max_diff(np.asarray(jmodel.patch_embed.proj.kernel[...]), kernel) <= 1e-6
    x = images(kwargs["img_size"])
    with torch.no_grad():
        ft = target.forward_features(torch.from_numpy(x)).numpy()
    jmodel.eval()
    assert max_diff(ft, np.asarray(jmodel.forward_features(x.transpose(0, 2, 3, 1)))) <= TOL


def _write(tmp_path: Path, sd: dict, fname: str = "w.pth") -> Path:
    path = tmp_path / fname
    if fname.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: torch.as_tensor(v).contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({k: torch.as_tensor(v) for k, v in sd.items()}, path)
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _bad_wrong_model(tmp_path):
    return _write(tmp_path, timm_state_dict("vit_small_patch16_224", img_size=32)), [
        "blocks.0.attn.qkv.weight: checkpoint (1152, 384) vs model (576, 192)", "--model"]


def _bad_truncated(fname):
    def make(tmp_path):
        path = _truncate(_write(tmp_path, timm_state_dict("vit_tiny_patch16_224", img_size=32), fname))
        return path, ["truncated or corrupt"]
    return make


def _bad_missing_key(tmp_path):
    sd = timm_state_dict("vit_tiny_patch16_224", img_size=32)
    del sd["blocks.11.norm2.weight"]
    return _write(tmp_path, sd), ["missing from the checkpoint: blocks.11.norm2.weight"]


def _bad_unexpected_key(tmp_path):
    sd = dict(timm_state_dict("vit_tiny_patch16_224", img_size=32), **{"blocks.0.extra.weight": np.zeros(3)})
    return _write(tmp_path, sd), ["not in the model: blocks.0.extra.weight"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_bad_wrong_model, id="vit_small-into-vit_tiny"),
        pytest.param(_bad_truncated("w.pth"), id="truncated-pth"),
        pytest.param(_bad_truncated("w.safetensors"), id="truncated-safetensors"),
        pytest.param(_bad_missing_key, id="missing-key"),
        pytest.param(_bad_unexpected_key, id="unexpected-key"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, capsys, make):
    path, expected = make(tmp_path)
    out = tmp_path / "out" / "converted"
    rc = convert_main(["--model", "vit_tiny_patch16_224", "--checkpoint", str(path), "--out", str(out),
                       "--img-size", "32"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and "Traceback" not in err
    for text in expected:
        assert text in err, err
    assert not out.exists() and not (tmp_path / "out").exists()


def test_bad_model_name_and_existing_out(tmp_path, capsys):
    rc = convert_main(["--model", "vit_tiny_patch16", "--random-init", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean" in err and "'vit_tiny_patch16_224'" in err  # among the close names
    assert not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("keep")
    rc = convert_main(["--model", "vit_tiny_patch16_224", "--random-init", "--out", str(tmp_path / "full")])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert (tmp_path / "full" / "f").read_text() == "keep"


def test_random_init_cli_and_api_error(tmp_path):
    out = tmp_path / "rand"
    assert convert_main(["--model", "vit_tiny_patch16_224", "--random-init", "--img-size", "32",
                         "--num-classes", "3", "--out", str(out)]) == 0
    model = jaxvit.create_model("vit_tiny_patch16_224", checkpoint=str(out))
    assert model.head.kernel.shape == (192, 3) and model.patch_embed.img_size == (32, 32)
    with pytest.raises(ConversionError, match="norm.weight"):
        sd = timm_state_dict("vit_tiny_patch16_224", img_size=32)
        del sd["norm.weight"]
        convert_state_dict("vit_tiny_patch16_224", sd, img_size=32, log=quiet)


def test_core_does_not_import_torch():
    modules = "jaxvit, jaxvit.weights, jaxvit.predict, jaxvit.train.checkpoint"
    code = f"import sys, {modules}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0


@pytest.mark.parametrize("name,kwargs", [
    ("swin_tiny_patch4_window7_224", dict(img_size=32, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4)),
    ("vit_tiny_patch16_224", dict(img_size=32, depth=1)),
])
def test_class_count_read_from_any_classifier_name(name, kwargs):
    """A fine-tuned checkpoint keeps its classes whatever the family calls its classifier."""
    tmodel = perturbed_timm(name, num_classes=7, **kwargs)
    jmodel, meta = convert_state_dict(name, tmodel.state_dict(), log=quiet, **kwargs)
    assert meta["kwargs"]["num_classes"] == 7 and "reinitialized" not in meta
    yt, yj = logits(tmodel, jmodel, images(32))
    assert max_diff(yt, yj) <= TOL


def test_cli_converts_a_reduced_model_with_model_args(tmp_path):
    out = tmp_path / "small"
    code = convert_main(["--model", "vit_tiny_patch16_224", "--random-init", "--out", str(out),
                         "--model-args", "depth=2,embed_dim=64,num_heads=2", "--img-size", "32",
                         "--patch-size", "4", "--num-classes", "10"])
    assert code == 0
    model = jaxvit.create_model("vit_tiny_patch16_224", checkpoint=str(out))
    assert len(model.blocks) == 2 and model.head.kernel[...].shape == (64, 10)
