"""timm's ``vision_transformer`` and ``deit`` names as keyword sets of jaxvit's
``VisionTransformer``: the table below, registered on import (``jaxvit.models`` imports this
module with the families). A new name is an entry, not a class.
"""

from __future__ import annotations

import re

from jaxvit.models.vit import VisionTransformer
from jaxvit.registry import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_INCEPTION_MEAN,
    IMAGENET_INCEPTION_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    build,
    register_model,
)


def _create(defaults: dict, kwargs: dict) -> VisionTransformer:
    return build(VisionTransformer, defaults, kwargs)


# --- the registered names ----------------------------------------------------------
# A name's width, depth and heads come from its size word (the second word of the name), its
# patch from ``patchN`` and its register count from ``regN``; a group adds its keywords, an
# entry its own. img_size and num_classes default to the cfg's, as timm's fixed-input cfgs do.
_SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "xsmall": dict(embed_dim=256, depth=10, num_heads=4),
    "wee": dict(embed_dim=256, depth=14, num_heads=4, mlp_ratio=5.0),
    "little": dict(embed_dim=320, depth=14, num_heads=5, mlp_ratio=5.6),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "medium": dict(embed_dim=512, depth=12, num_heads=8),
    "mediumd": dict(embed_dim=512, depth=20, num_heads=8),
    "betwixt": dict(embed_dim=640, depth=12, num_heads=10),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "so150m": dict(embed_dim=896, depth=18, num_heads=14, mlp_ratio=2.572),
    "so150m2": dict(embed_dim=832, depth=21, num_heads=13, mlp_ratio=34 / 13),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
    "intern300m": dict(embed_dim=1024, depth=24, num_heads=16),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16),
    "so400m": dict(embed_dim=1152, depth=27, num_heads=16, mlp_ratio=3.7362),
    "giant": dict(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
    "giantopt": dict(embed_dim=1536, depth=40, num_heads=16),
    "gigantic": dict(embed_dim=1664, depth=48, num_heads=16, mlp_ratio=64 / 13),
}

_INCEPTION = dict(mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD)
_IMAGENET = dict(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
_CLIP = dict(mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)
_RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

_CLIP_ARCH = dict(pre_norm=True, norm_eps=1e-5)
_GAP = dict(class_token=False, global_pool="avg", fc_norm=False)  # pooled after the final norm
_SBB = dict(init_values=1e-5, class_token=False, no_embed_class=True, global_pool="avg")
_DEIT3 = dict(no_embed_class=True, init_values=1e-6)
_AIMV2 = dict(class_token=False, global_pool="avg", fc_norm=False, qkv_bias=False, proj_bias=False, act_layer="silu",
              norm_layer="rmsnorm", embed_norm_layer="rmsnorm", norm_eps=1e-5, mlp_layer="swiglu")
_AIMV2_SIZES = {
    "large": dict(embed_dim=1024, depth=24, num_heads=8, mlp_ratio=2.75),
    "huge": dict(embed_dim=1536, depth=24, num_heads=12, mlp_ratio=2.6667),
    "1b": dict(embed_dim=2048, depth=24, num_heads=16, mlp_ratio=2.75),
    "3b": dict(embed_dim=3072, depth=24, num_heads=24, mlp_ratio=2.6667),
}
_TEST_REG1 = dict(class_token=False, reg_tokens=1, global_pool="avg", init_values=1e-5)
_GIANT_SWIGLU = dict(embed_dim=1536, num_heads=24, mlp_ratio=2.66667 * 2, mlp_layer="swiglu_packed", act_layer="silu")

# (keywords, mean/std, {name: (image size, crop_pct, num_classes[, the name's own keywords])}),
# as timm's entrypoints and the default (first) pretrained cfg of each name.
_GROUPS: list[tuple[dict, dict, dict[str, tuple]]] = [
    ({}, _INCEPTION, {
        "vit_tiny_patch16_224": (224, 0.9, 1000), "vit_tiny_patch16_384": (384, 1.0, 1000),
        "vit_small_patch32_224": (224, 0.9, 1000), "vit_small_patch32_384": (384, 1.0, 1000),
        "vit_small_patch16_224": (224, 0.9, 1000), "vit_small_patch16_384": (384, 1.0, 1000),
        "vit_base_patch32_224": (224, 0.9, 1000), "vit_base_patch32_384": (384, 1.0, 1000),
        "vit_base_patch16_224": (224, 0.9, 1000), "vit_base_patch16_384": (384, 1.0, 1000),
        "vit_base_patch8_224": (224, 0.9, 1000),
        "vit_large_patch32_224": (224, 0.9, 0), "vit_large_patch32_384": (384, 1.0, 1000),
        "vit_large_patch16_224": (224, 0.9, 1000), "vit_large_patch16_384": (384, 1.0, 1000),
        "vit_large_patch14_224": (224, 0.9, 1000), "vit_huge_patch14_224": (224, 0.9, 0),
        "vit_giant_patch14_224": (224, 0.9, 1000), "vit_gigantic_patch14_224": (224, 0.9, 1000),
        "vit_small_patch16_36x1_224": (224, 0.9, 1000, dict(depth=36, init_values=1e-5)),
        "vit_small_patch16_18x2_224": (224, 0.9, 1000, dict(depth=18, init_values=1e-5, block_fn="parallel")),
        "vit_base_patch16_18x2_224": (224, 0.9, 1000, dict(depth=18, init_values=1e-5, block_fn="parallel")),
        "vit_base_patch32_plus_256": (256, 0.95, 1000, dict(embed_dim=896, num_heads=14, init_values=1e-5)),
        "vit_base_patch16_plus_240": (240, 0.95, 1000, dict(embed_dim=896, num_heads=14, init_values=1e-5)),
        "vit_base_patch16_gap_224": (224, 0.9, 1000, dict(_GAP, num_heads=16)),
    }),
    ({}, _IMAGENET, {"vit_small_patch8_224": (224, 0.9, 0)}),  # DINO
    (dict(class_token=False, global_pool="avg", qkv_bias=False, init_values=1e-5, block_fn="res_post"), _INCEPTION, {
        "vit_base_patch16_rpn_224": (224, 0.9, 1000),
    }),
    (dict(scale_attn_norm=True, scale_mlp_norm=True, global_pool="avg", norm_eps=1e-5), _IMAGENET, {  # BEiT-3
        "beit3_base_patch16_224": (224, 1.0, 1000), "beit3_large_patch16_224": (224, 1.0, 1000),
        "beit3_giant_patch14_224": (224, 1.0, 1000, dict(mlp_ratio=4.3637)),
        "beit3_giant_patch14_336": (336, 1.0, 1000, dict(mlp_ratio=4.3637)),
    }),
    (dict(qkv_bias=False), dict(_RAW, interpolation="bilinear"), {
        "vit_base_patch16_224_miil": (224, 0.875, 11221),
    }),
    (dict(_GAP, qkv_bias=False, init_values=1e-6), _INCEPTION, {
        "vit_medium_patch16_gap_240": (240, 0.95, 11821), "vit_medium_patch16_gap_256": (256, 0.95, 1000),
        "vit_medium_patch16_gap_384": (384, 0.95, 1000), "vit_betwixt_patch16_gap_256": (256, 0.95, 1000),
    }),
    (_GAP, _IMAGENET, {  # I-JEPA
        "vit_huge_patch14_gap_224": (224, 0.9, 0), "vit_huge_patch16_gap_448": (448, 1.0, 0),
        "vit_giant_patch16_gap_224": (224, 0.9, 0),
    }),
    (_CLIP_ARCH, _CLIP, {
        "vit_xsmall_patch16_clip_224": (224, 0.9, 512), "vit_medium_patch32_clip_224": (224, 0.9, 512),
        "vit_medium_patch16_clip_224": (224, 0.9, 512), "vit_betwixt_patch32_clip_224": (224, 0.9, 512),
        "vit_base_patch32_clip_224": (224, 0.9, 1000), "vit_base_patch32_clip_256": (256, 1.0, 512),
        "vit_base_patch32_clip_384": (384, 1.0, 1000), "vit_base_patch32_clip_448": (448, 1.0, 1000),
        "vit_base_patch16_clip_224": (224, 0.95, 1000), "vit_base_patch16_clip_384": (384, 1.0, 1000),
        "vit_base_patch16_plus_clip_240": (240, 1.0, 640, dict(embed_dim=896, num_heads=14)),
        "vit_huge_patch14_clip_224": (224, 1.0, 1000), "vit_huge_patch14_clip_336": (336, 1.0, 1000),
        "vit_huge_patch14_clip_378": (378, 1.0, 1024), "vit_giant_patch14_clip_224": (224, 1.0, 1024),
        "vit_gigantic_patch14_clip_224": (224, 1.0, 1280), "vit_gigantic_patch14_clip_378": (378, 1.0, 1280),
    }),
    (_CLIP_ARCH, _INCEPTION, {
        "vit_large_patch14_clip_224": (224, 1.0, 1000), "vit_large_patch14_clip_336": (336, 1.0, 1000),
    }),
    (dict(_CLIP_ARCH, act_layer="quick_gelu"), _CLIP, {
        "vit_base_patch32_clip_quickgelu_224": (224, 0.9, 512),
        "vit_base_patch16_clip_quickgelu_224": (224, 1.0, 512),
        "vit_large_patch14_clip_quickgelu_224": (224, 1.0, 768),
        "vit_large_patch14_clip_quickgelu_336": (336, 1.0, 768),
        "vit_huge_patch14_clip_quickgelu_224": (224, 1.0, 1024),
        "vit_huge_patch14_clip_quickgelu_378": (378, 1.0, 1024),
        "vit_gigantic_patch14_clip_quickgelu_224": (224, 1.0, 1280),
    }),
    (dict(global_pool="avg"), _CLIP, {
        "eva_large_patch14_196": (196, 1.0, 1000), "eva_large_patch14_336": (336, 1.0, 1000),
    }),
    (dict(no_embed_class=True, patch_size=16), _INCEPTION, {
        "flexivit_small": (240, 0.95, 1000), "flexivit_base": (240, 0.95, 1000), "flexivit_large": (240, 0.95, 1000),
    }),
    (dict(init_values=1e-5), _IMAGENET, {
        "vit_small_patch14_dinov2": (518, 1.0, 0), "vit_base_patch14_dinov2": (518, 1.0, 0),
        "vit_large_patch14_dinov2": (518, 1.0, 0), "vit_giant_patch14_dinov2": (518, 1.0, 0, _GIANT_SWIGLU),
    }),
    (dict(init_values=1e-5, no_embed_class=True), _IMAGENET, {
        "vit_small_patch14_reg4_dinov2": (518, 1.0, 0), "vit_base_patch14_reg4_dinov2": (518, 1.0, 0),
        "vit_large_patch14_reg4_dinov2": (518, 1.0, 0), "vit_giant_patch14_reg4_dinov2": (518, 1.0, 0, _GIANT_SWIGLU),
    }),
    (dict(init_values=1.0, no_embed_class=True), _RAW, {
        "vit_base_patch14_reg1_tipsv2": (448, 1.0, 0), "vit_large_patch14_reg1_tipsv2": (448, 1.0, 0),
        "vit_so400m_patch14_reg1_tipsv2": (448, 1.0, 0, dict(mlp_ratio=4304 / 1152)),
        "vit_giant_patch14_reg1_tipsv2": (448, 1.0, 0, _GIANT_SWIGLU),
    }),
    (dict(class_token=False, global_pool="map"), _INCEPTION, {  # SigLIP's towers, attention-pooled
        "vit_base_patch32_siglip_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_base_patch16_siglip_224": (224, 0.9, 0), "vit_base_patch16_siglip_256": (256, 0.9, 0),
        "vit_base_patch16_siglip_384": (384, 0.9, 0), "vit_base_patch16_siglip_512": (512, 0.9, 0),
        "vit_large_patch16_siglip_256": (256, 0.9, 0), "vit_large_patch16_siglip_384": (384, 0.9, 0),
        "vit_large_patch16_siglip_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch14_siglip_224": (224, 0.9, 0), "vit_so400m_patch14_siglip_378": (378, 0.9, 0),
        "vit_so400m_patch14_siglip_384": (384, 0.9, 0),  # 27 patches a side: the last 6 px unread, as timm's
        "vit_so400m_patch16_siglip_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so150m_patch16_reg4_map_256": (256, 0.9, 1000),
    }),
    (_GAP, _INCEPTION, {  # SigLIP's towers pooled by averaging
        "vit_base_patch32_siglip_gap_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_base_patch16_siglip_gap_224": (224, 0.9, 0), "vit_base_patch16_siglip_gap_256": (256, 0.9, 0),
        "vit_base_patch16_siglip_gap_384": (384, 0.9, 0), "vit_base_patch16_siglip_gap_512": (512, 0.9, 0),
        "vit_large_patch16_siglip_gap_256": (256, 0.9, 0), "vit_large_patch16_siglip_gap_384": (384, 0.9, 0),
        "vit_large_patch16_siglip_gap_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch14_siglip_gap_224": (224, 0.9, 0), "vit_so400m_patch14_siglip_gap_378": (378, 0.9, 0),
        "vit_so400m_patch14_siglip_gap_384": (384, 1.0, 0), "vit_so400m_patch14_siglip_gap_448": (448, 1.0, 0),
        "vit_so400m_patch14_siglip_gap_896": (896, 1.0, 0),
        "vit_so400m_patch16_siglip_gap_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_gap_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_gap_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_gap_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_gap_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
    }),
    (_SBB, _INCEPTION, {  # timm's "searching for better baselines" ViTs
        "vit_wee_patch16_reg1_gap_256": (256, 0.95, 1000), "vit_little_patch16_reg1_gap_256": (256, 0.95, 1000),
        "vit_little_patch16_reg4_gap_256": (256, 0.95, 1000),
        "vit_pwee_patch16_reg1_gap_256": (256, 0.95, 1000, dict(_SIZES["wee"], depth=16, block_fn="parallel_scaling")),
        # differential attention: in each Block, and in the parallel-scaling block
        "vit_dwee_patch16_reg1_gap_256": (256, 0.95, 1000, dict(_SIZES["wee"], attn_layer="diff")),
        "vit_dlittle_patch16_reg1_gap_256": (256, 0.95, 1000, dict(_SIZES["little"], attn_layer="diff")),
        "vit_dpwee_patch16_reg1_gap_256": (
            256, 0.95, 1000, dict(_SIZES["wee"], depth=16, block_fn="diff_parallel_scaling"),
        ),
        "vit_medium_patch16_reg1_gap_256": (256, 0.95, 1000),
        "vit_medium_patch16_reg4_gap_256": (256, 0.95, 1000), "vit_mediumd_patch16_reg4_gap_256": (256, 0.95, 1000),
        "vit_mediumd_patch16_reg4_gap_384": (384, 1.0, 1000), "vit_betwixt_patch16_reg1_gap_256": (256, 0.95, 1000),
        "vit_betwixt_patch16_reg4_gap_256": (256, 0.95, 1000), "vit_betwixt_patch16_reg4_gap_384": (384, 1.0, 1000),
        "vit_base_patch16_reg4_gap_256": (256, 0.9, 1000, dict(init_values=None)),
        "vit_so150m_patch16_reg4_gap_256": (256, 0.95, 1000, dict(_GAP, init_values=None, no_embed_class=False)),
        "vit_so150m_patch16_reg4_gap_384": (384, 1.0, 1000, dict(_GAP, init_values=None, no_embed_class=False)),
        "vit_so150m2_patch16_reg1_gap_256": (256, 1.0, 1000, dict(qkv_bias=False, no_embed_class=False)),
        "vit_so150m2_patch16_reg1_gap_384": (384, 1.0, 1000, dict(qkv_bias=False, no_embed_class=False)),
        "vit_so150m2_patch16_reg1_gap_448": (448, 1.0, 1000, dict(qkv_bias=False, no_embed_class=False)),
    }),
    (dict(no_embed_class=True, final_norm=False), _CLIP, {  # C-RADIO
        "vit_base_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7, init_values=1e-5)),
        "vit_large_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7, init_values=1e-5)),
        "vit_huge_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7)),
        "vit_giant_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7, embed_dim=1536, num_heads=24, mlp_ratio=4.0)),
        "vit_so400m_patch16_radio_v4": (512, 1.0, 0, dict(reg_tokens=9, mlp_ratio=4304 / 1152)),
        "vit_huge_patch16_radio_v4": (512, 1.0, 0, dict(reg_tokens=9)),
    }),
    (dict(pre_norm=True, no_embed_class=True, norm_layer="rmsnorm", block_fn="parallel_scaling", qkv_bias=False,
          qk_norm=True), _INCEPTION, {
        "vit_base_patch16_xp_224": (224, 0.9, 1000), "vit_large_patch14_xp_224": (224, 0.9, 1000),
        "vit_huge_patch14_xp_224": (224, 0.9, 1000),
    }),
    (_AIMV2, _CLIP, {
        f"aimv2_{size}_patch14_{img}": (img, 1.0, 0, arch)
        for size, arch in _AIMV2_SIZES.items() for img in (224, 336, 448)
    }),
    (dict(init_values=0.1, final_norm=False, dynamic_img_size=True), _IMAGENET, {
        "vit_intern300m_patch14_448": (448, 1.0, 0),
    }),
    (dict(patch_size=16), _INCEPTION, {  # timm's small debug ViTs
        "test_vit": (160, 0.95, 1000, dict(embed_dim=64, depth=6, num_heads=2, mlp_ratio=3, dynamic_img_size=True)),
        "test_vit2": (160, 0.95, 1000, dict(_TEST_REG1, embed_dim=64, depth=8, num_heads=2, mlp_ratio=3,
                                            dynamic_img_size=True)),
        "test_vit3": (160, 0.95, 1000, dict(_TEST_REG1, embed_dim=96, depth=9, num_heads=3, mlp_ratio=2,
                                            global_pool="map", pool_include_prefix=True)),
        "test_vit4": (160, 0.95, 1000, dict(_TEST_REG1, embed_dim=96, depth=9, num_heads=3, mlp_ratio=3,
                                            dynamic_img_size=True, norm_layer="rmsnorm")),
    }),
    ({}, _IMAGENET, {
        "deit_tiny_patch16_224": (224, 0.9, 1000), "deit_small_patch16_224": (224, 0.9, 1000),
        "deit_base_patch16_224": (224, 0.9, 1000), "deit_base_patch16_384": (384, 1.0, 1000),
    }),
    (dict(distilled=True), _IMAGENET, {
        "deit_tiny_distilled_patch16_224": (224, 0.9, 1000), "deit_small_distilled_patch16_224": (224, 0.9, 1000),
        "deit_base_distilled_patch16_224": (224, 0.9, 1000), "deit_base_distilled_patch16_384": (384, 1.0, 1000),
    }),
    (_DEIT3, _IMAGENET, {
        "deit3_small_patch16_224": (224, 0.9, 1000), "deit3_small_patch16_384": (384, 1.0, 1000),
        "deit3_medium_patch16_224": (224, 0.9, 1000), "deit3_base_patch16_224": (224, 0.9, 1000),
        "deit3_base_patch16_384": (384, 1.0, 1000), "deit3_large_patch16_224": (224, 0.9, 1000),
        "deit3_large_patch16_384": (384, 1.0, 1000), "deit3_huge_patch14_224": (224, 0.9, 1000),
    }),
]


def _from_name(name: str) -> dict:
    """The keywords a name spells: its size word, ``patchN``, ``regN``."""
    out = dict(_SIZES.get(name.split("_")[1], {}))  # AIMv2's 1b/3b: their entries say it all
    if patch := re.search(r"_patch(\d+)", name):
        out["patch_size"] = int(patch.group(1))
    if reg := re.search(r"_reg(\d+)_", name):
        out["reg_tokens"] = int(reg.group(1))
    return out


# Each registered name's keywords for VisionTransformer (filled below): what ``create_model(name)``
# builds, before the caller's own keywords.
KEYWORDS: dict[str, dict] = {}


def _register(name: str, keywords: dict, cfg: dict) -> None:
    """Registers ``name``: a ViT built from ``keywords`` whose image size and class count
    default to the cfg's."""
    size = cfg["input_size"][0]
    defaults = KEYWORDS[name] = dict(keywords, img_size=size, num_classes=cfg["num_classes"])

    def make(**kwargs) -> VisionTransformer:
        return _create(defaults, kwargs)

    make.__name__ = make.__qualname__ = name
    register_model("vit", cfg, name=name)(make)


for _keywords, _norm, _names in _GROUPS:
    for _name, (_size, _crop, _classes, *_own) in _names.items():
        _cfg = dict(_norm, input_size=(_size, _size, 3), crop_pct=_crop, num_classes=_classes)
        _register(_name, {**_from_name(_name), **_keywords, **(_own[0] if _own else {})}, _cfg)
