"""timm's AutoAugment and RandAugment, in TF ops, and the Pillow-exact image ops they (and
torchvision_ops.py) are made of.

Images are float32 HWC tensors holding uint8 values (0..255 integers), like the PIL images
timm augments, and every op rounds the way Pillow does, so ops chain like timm's. Lookup-table
and blend ops (invert, posterize, solarize, solarize_add, equalize, autocontrast, color,
contrast, brightness) reproduce Pillow's integer maths; resampling ops (rotate, shear,
translate) use geometric.py's Pillow sampling in float64, and sharpness Pillow's float32 3x3
filter.
All randomness is stateless, keyed by the per-example seed the pipeline passes in.

This module imports TensorFlow on import; only ``transforms`` imports it, lazily.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

from jaxvit.data.geometric import FILL, affine, f64, image_size, rotation_matrix
from jaxvit.data.tf_util import import_tf
from jaxvit.errors import ConfigError

tf = import_tf()

LEVEL_DENOM = 10.0  # timm: magnitude M is the fraction M / 10 of each op's range


# --- randomness ----------------------------------------------------------------------
def split(seed, n: int):
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def uniform(seed, lo=0.0, hi=1.0, dtype=tf.float32):
    return tf.random.stateless_uniform([], seed, lo, hi, dtype=dtype)


def randint(seed, lo, hi):
    """An int32 uniform in [lo, hi] (inclusive, like Python's random.randint)."""
    return tf.random.stateless_uniform([], seed, lo, hi + 1, dtype=tf.int32)


def permutation(seed, n: int):
    return tf.argsort(tf.random.stateless_uniform([n], seed))


def quantize(image):
    """Rounds and clips to uint8 values, as a PIL image holds them."""
    return tf.round(tf.clip_by_value(image, 0.0, 255.0))


# --- pixel ops (Pillow ImageOps / ImageEnhance) ----------------------------------------
def invert(image):
    return 255.0 - image


def posterize(image, bits):
    """ImageOps.posterize: keep the ``bits`` most significant bits of each value (0 bits: black)."""
    shift = tf.clip_by_value(8 - tf.cast(bits, tf.int32), 0, 8)
    x = tf.cast(image, tf.int32)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(x, shift), shift), tf.float32)


def solarize(image, thresh):
    """ImageOps.solarize: invert values at or above ``thresh``."""
    return tf.where(image < tf.cast(thresh, tf.float32), image, 255.0 - image)


def solarize_add(image, add, thresh=128):
    """timm's solarize_add: add ``add`` (capped at 255) to values below ``thresh``."""
    added = tf.minimum(image + tf.cast(add, tf.float32), 255.0)
    return tf.where(image < tf.cast(thresh, tf.float32), added, image)


def autocontrast(image):
    """ImageOps.autocontrast (no cutoff): stretch each channel's [min, max] to [0, 255]."""
    x = tf.cast(image, tf.float64)
    lo, hi = tf.reduce_min(x, axis=[0, 1]), tf.reduce_max(x, axis=[0, 1])
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    out = tf.clip_by_value(tf.floor(x * scale + (-lo * scale)), 0.0, 255.0)
    return tf.cast(tf.where(hi > lo, out, x), tf.float32)


def equalize(image):
    """ImageOps.equalize: per channel, map values through the cumulative histogram in 255 steps."""
    x = tf.cast(image, tf.int32)
    channel = tf.range(3, dtype=tf.int32) * 256
    hist = tf.reshape(tf.math.bincount(tf.reshape(x + channel, [-1]), minlength=768, maxlength=768), [3, 256])
    hist = tf.cast(hist, tf.int64)
    nonzero = hist > 0
    last = 255 - tf.argmax(tf.cast(tf.reverse(nonzero, [1]), tf.int32), axis=1, output_type=tf.int32)
    step = (tf.reduce_sum(hist, 1) - tf.gather(hist, last, batch_dims=1)) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    table = (safe_step // 2 + tf.cumsum(hist, axis=1, exclusive=True)) // safe_step
    keep = (tf.reduce_sum(tf.cast(nonzero, tf.int32), 1) <= 1) | (step == 0)
    table = tf.where(keep[:, None], tf.range(256, dtype=tf.int64)[None], tf.clip_by_value(table, 0, 255))
    out = tf.gather(tf.transpose(table), x)  # [H, W, 3, 3]: value -> every channel's table
    return tf.cast(tf.linalg.diag_part(out), tf.float32)


def grayscale(image):
    """Pillow's RGB -> L conversion (ITU-R 601-2 luma, 16.16 fixed point)."""
    x = tf.cast(image, tf.int32)
    luma = (x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) // 65536
    return tf.cast(luma, tf.float32)[..., None]


def blend(degenerate, image, factor):
    """Image.blend(degenerate, image, factor): interpolate (or extrapolate) in float32, clip, truncate."""
    out = degenerate + tf.cast(factor, tf.float32) * (image - degenerate)
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0))


def enhance_color(image, factor):
    """ImageEnhance.Color: 0 gives the greyscale image, 1 the original."""
    return blend(grayscale(image), image, factor)


def enhance_contrast(image, factor):
    """ImageEnhance.Contrast: blend with the image's mean grey level (rounded)."""
    mean = tf.reduce_mean(tf.cast(grayscale(image), tf.float64))
    return blend(tf.cast(tf.floor(mean + 0.5), tf.float32), image, factor)


def enhance_brightness(image, factor):
    """ImageEnhance.Brightness: blend with black."""
    return blend(tf.zeros_like(image), image, factor)


def smooth(image):
    """ImageFilter.SMOOTH: 3x3 kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 in float32; border pixels kept."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    edge, centre = tf.constant(1 / 13, tf.float32), tf.constant(5 / 13, tf.float32)
    padded = tf.pad(image, [[1, 1], [1, 1], [0, 0]])

    def row(dy, middle):
        r = padded[dy : dy + h]
        return r[:, 0:w] * edge + r[:, 1 : w + 1] * middle + r[:, 2 : w + 2] * edge

    total = 0.5 + row(2, edge) + row(1, centre) + row(0, edge)  # Pillow sums row y+1, y, y-1
    ys, xs = tf.range(h)[:, None], tf.range(w)[None, :]
    interior = (ys > 0) & (ys < h - 1) & (xs > 0) & (xs < w - 1)
    return tf.where(interior[..., None], tf.floor(tf.clip_by_value(total, 0.0, 255.0)), image)


def enhance_sharpness(image, factor):
    """ImageEnhance.Sharpness: blend with the SMOOTH-filtered image (2 sharpens)."""
    return blend(smooth(image), image, factor)


# --- timm's AugmentOp ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Hparams:
    """timm's augmentation hparams: fill colour (img_mean), resample, translate_pct and magnitude noise."""

    img_mean: tuple = FILL
    interpolation: str = "random"  # timm's default when hparams name none
    translate_pct: float = 0.45
    magnitude_std: float = 0.0  # > 0: magnitude ~ N(m, std); inf: uniform in [0, m]
    magnitude_max: float = 0.0  # 0: magnitudes are clipped to [0, 10]


@dataclasses.dataclass(frozen=True)
class Level:
    """timm's *_level_to_arg as data: with x = magnitude / 10 * scale (floored if ``floor``,
    capped at ``cap``, randomly negated if ``negate``), the argument is max(base + sign * x, minimum)."""

    scale: float | None = 0.0  # None: hparams.translate_pct
    floor: bool = False
    cap: float = math.inf
    base: float = 0.0
    sign: float = 1.0
    negate: bool = False
    minimum: float = -math.inf


_ENHANCE = Level(1.8, base=0.1)  # range [0.1, 1.9]
_ENHANCE_INCREASING = Level(0.9, base=1.0, negate=True, minimum=0.1)  # 1 -/+ up to 0.9
# name -> (op family, level); the family names the function that applies it
OPS = {
    "AutoContrast": ("autocontrast", Level()),
    "Equalize": ("equalize", Level()),
    "Invert": ("invert", Level()),
    "Rotate": ("rotate", Level(30.0, negate=True)),
    "Posterize": ("posterize", Level(4.0, floor=True)),  # bits kept: 0..4
    "PosterizeIncreasing": ("posterize", Level(4.0, floor=True, base=4.0, sign=-1.0)),  # 4..0
    "PosterizeOriginal": ("posterize", Level(4.0, floor=True, base=4.0)),  # 4..8
    "Solarize": ("solarize", Level(256.0, floor=True, cap=256.0)),
    "SolarizeIncreasing": ("solarize", Level(256.0, floor=True, cap=256.0, base=256.0, sign=-1.0)),
    "SolarizeAdd": ("solarize_add", Level(110.0, floor=True, cap=128.0)),
    "Color": ("color", _ENHANCE),
    "ColorIncreasing": ("color", _ENHANCE_INCREASING),
    "Contrast": ("contrast", _ENHANCE),
    "ContrastIncreasing": ("contrast", _ENHANCE_INCREASING),
    "Brightness": ("brightness", _ENHANCE),
    "BrightnessIncreasing": ("brightness", _ENHANCE_INCREASING),
    "Sharpness": ("sharpness", _ENHANCE),
    "SharpnessIncreasing": ("sharpness", _ENHANCE_INCREASING),
    "ShearX": ("shear_x", Level(0.3, negate=True)),
    "ShearY": ("shear_y", Level(0.3, negate=True)),
    "TranslateXRel": ("translate_x", Level(None, negate=True)),
    "TranslateYRel": ("translate_y", Level(None, negate=True)),
}
PIXEL_FAMILIES = {
    "autocontrast": lambda image, arg: autocontrast(image),
    "equalize": lambda image, arg: equalize(image),
    "invert": lambda image, arg: invert(image),
    "posterize": posterize,
    "solarize": solarize,
    "solarize_add": solarize_add,
    "color": enhance_color,
    "contrast": enhance_contrast,
    "brightness": enhance_brightness,
    "sharpness": enhance_sharpness,
}
GEOMETRIC_FAMILIES = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def level_to_arg(level: Level, magnitude, hp: Hparams, sign_seed):
    """The op argument at ``magnitude`` (float64, 0..10), as timm's level functions compute it."""
    scale = hp.translate_pct if level.scale is None else level.scale
    x = f64(magnitude) / LEVEL_DENOM * scale
    x = tf.minimum(tf.floor(x) if level.floor else x, level.cap)
    if level.negate:  # timm's _randomly_negate: negative with probability 1/2
        x = tf.where(uniform(sign_seed, dtype=tf.float64) > 0.5, -x, x)
    return tf.maximum(level.base + level.sign * x, level.minimum)


def geometric_matrix(family, arg, width, height):
    """Pillow's matrix for timm's rotate (degrees), shear_x / shear_y (factor), translate_x / translate_y
    (fraction of the width / height): the same transform PIL's img.rotate / img.transform apply."""
    if family == "rotate":
        return rotation_matrix(arg, width, height)
    zero, one = f64(0.0), f64(1.0)
    return {
        "shear_x": (one, arg, zero, zero, one, zero),
        "shear_y": (one, zero, zero, arg, one, zero),
        "translate_x": (one, zero, arg * tf.cast(width, tf.float64), zero, one, zero),
        "translate_y": (one, zero, zero, zero, one, arg * tf.cast(height, tf.float64)),
    }[family]


@dataclasses.dataclass(frozen=True)
class AugmentOp:
    """timm's AugmentOp: op ``name`` applied with probability ``prob`` at ``magnitude`` (0-10 scale)."""

    name: str
    prob: float = 0.5
    magnitude: float = 10.0
    hparams: Hparams = Hparams()

    def __post_init__(self):
        if self.name not in OPS:
            raise ConfigError(f"unknown augment op {self.name!r}; valid ops: {sorted(OPS)}")

    def __call__(self, image, seed):
        return apply_one_of((self,), 0, image, seed)


def _magnitude(magnitude, hp: Hparams, seed):
    """AugmentOp's magnitude: noisy with magnitude_std (uniform in [0, m] if inf), clipped to [0, max]."""
    if hp.magnitude_std == math.inf:
        magnitude = uniform(seed, 0.0, magnitude, tf.float64)
    elif hp.magnitude_std > 0:
        magnitude = magnitude + hp.magnitude_std * tf.random.stateless_normal([], seed, dtype=tf.float64)
    return tf.clip_by_value(magnitude, 0.0, float(hp.magnitude_max or LEVEL_DENOM))


def apply_one_of(ops, index, image, seed):
    """AugmentOp ``ops[index]`` (``index`` may be a tensor) on ``image``.

    Built for tf.data, where every node of every branch of a Case costs time on each call: the
    per-op numbers are gathered from tables and one Case runs over the op *families*, with one
    affine sampler shared by all geometric ops.
    """
    hp = ops[0].hparams
    if any(op.hparams != hp for op in ops):
        raise ConfigError("ops applied by one policy must share their hparams")
    s_prob, s_mag, s_sign, s_interp = split(seed, 4)
    table = lambda values, dtype=tf.float64: tf.gather(tf.constant(values, dtype), index)
    applied = uniform(s_prob, dtype=tf.float64) <= table([op.prob for op in ops])  # timm: skip if random() > prob
    magnitude = _magnitude(table([float(op.magnitude) for op in ops]), hp, s_mag)
    used = {OPS[op.name][0] for op in ops}
    pixel_families = [f for f in PIXEL_FAMILIES if f in used]
    geometric = [f for f in GEOMETRIC_FAMILIES if f in used]
    families = pixel_families + geometric  # branch k + 1 applies pixel family k; the last one, any geometric
    levels = sorted({OPS[op.name][1] for op in ops}, key=repr)
    args = [level_to_arg(level, magnitude, hp, s_sign) for level in levels]
    arg = tf.gather(tf.stack(args), table([levels.index(OPS[op.name][1]) for op in ops], tf.int32))
    family = table([families.index(OPS[op.name][0]) for op in ops], tf.int32)
    branches = [functools.partial(tf.identity, image)]
    branches += [functools.partial(PIXEL_FAMILIES[f], image, arg) for f in pixel_families]
    if geometric:
        branches.append(functools.partial(_warp, image, geometric, family - len(pixel_families), arg, hp, s_interp))
    chosen = tf.minimum(family, len(pixel_families)) + 1
    return tf.switch_case(tf.where(applied, chosen, 0), branches)


def _warp(image, families, index, arg, hp: Hparams, seed):
    """The geometric op ``families[index]`` through one Pillow affine sampler."""
    width, height = image_size(image)
    matrices = [geometric_matrix(f, arg, width, height) for f in families]
    matrix = [tf.gather(tf.stack([m[i] for m in matrices]), index) for i in range(6)]
    if hp.interpolation != "random":
        return affine(image, matrix, hp.interpolation, hp.img_mean)
    return tf.cond(  # timm: bilinear or bicubic, drawn per call
        uniform(seed) < 0.5,
        lambda: affine(image, matrix, "bilinear", hp.img_mean),
        lambda: affine(image, matrix, "bicubic", hp.img_mean),
    )


# --- RandAugment / AutoAugment and timm's config strings ---------------------------------------
RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
# inc1: the ops whose severity grows with magnitude
RAND_INCREASING_TRANSFORMS = tuple(
    f"{n}Increasing" if n in ("Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness") else n
    for n in RAND_TRANSFORMS
)

# AutoAugment policies (op, prob, magnitude) per sub-policy: 'v0' from the TPU EfficientNet
# implementation, 'original' from the AutoAugment paper (arXiv:1805.09501), as timm lists them.
_POLICY_TABLES = {
    "v0": """
        Equalize .8 1, ShearY .8 4 | Color .4 9, Equalize .6 3 | Color .4 1, Rotate .6 8
        Solarize .8 3, Equalize .4 7 | Solarize .4 2, Solarize .6 2 | Color .2 0, Equalize .8 8
        Equalize .4 8, SolarizeAdd .8 3 | ShearX .2 9, Rotate .6 8 | Color .6 1, Equalize 1 2
        Invert .4 9, Rotate .6 0 | Equalize 1 9, ShearY .6 3 | Color .4 7, Equalize .6 0
        Posterize .4 6, AutoContrast .4 7 | Solarize .6 8, Color .6 9 | Solarize .2 4, Rotate .8 9
        Rotate 1 7, TranslateYRel .8 9 | ShearX 0 0, Solarize .8 4 | ShearY .8 0, Color .6 4
        Color 1 0, Rotate .6 2 | Equalize .8 4, Equalize 0 8 | Equalize 1 4, AutoContrast .6 2
        ShearY .4 7, SolarizeAdd .6 7 | Posterize .8 2, Solarize .6 10 | Solarize .6 8, Equalize .6 1
        Color .8 6, Rotate .4 5""",
    "original": """
        PosterizeOriginal .4 8, Rotate .6 9 | Solarize .6 5, AutoContrast .6 5
        Equalize .8 8, Equalize .6 3 | PosterizeOriginal .6 7, PosterizeOriginal .6 6
        Equalize .4 7, Solarize .2 4 | Equalize .4 4, Rotate .8 8 | Solarize .6 3, Equalize .6 7
        PosterizeOriginal .8 5, Equalize 1 2 | Rotate .2 3, Solarize .6 8
        Equalize .6 8, PosterizeOriginal .4 6 | Rotate .8 8, Color .4 0 | Rotate .4 9, Equalize .6 2
        Equalize 0 7, Equalize .8 8 | Invert .6 4, Equalize 1 8 | Color .6 4, Contrast 1 8
        Rotate .8 8, Color 1 2 | Color .8 8, Solarize .8 7 | Sharpness .4 7, Invert .6 8
        ShearX .6 5, Equalize 1 9 | Color .4 0, Equalize .6 3 | Equalize .4 7, Solarize .2 4
        Solarize .6 5, AutoContrast .6 5 | Invert .6 4, Equalize 1 8 | Color .6 4, Contrast 1 8
        Equalize .8 8, Equalize .6 3""",
}


def _parse_table(table: str, posterize: str | None = None):
    subs = []
    for sub in table.replace("\n", "|").split("|"):
        if sub.strip():
            ops = [op.split() for op in sub.split(",")]
            subs.append([(posterize if posterize and n.startswith("Posterize") else n, float(p), float(m))
                         for n, p, m in ops])
    return subs


# 'v0r' / 'originalr': the same with PosterizeIncreasing (bits dropped grow with magnitude)
POLICIES = {
    **{name: _parse_table(t) for name, t in _POLICY_TABLES.items()},
    **{f"{name}r": _parse_table(t, "PosterizeIncreasing") for name, t in _POLICY_TABLES.items()},
}
RAND_KEYS = {"n": int, "m": int, "mstd": float, "mmax": int, "inc": int, "p": float}
POLICY_KEYS = {"mstd": float}


def parse(config_str: str) -> tuple[str, dict]:
    """Splits a timm auto-augment string into (head, {key: value}).

    ``rand-m9-n2-mstd0.5-inc1`` is RandAugment (keys n, m, mstd, mmax, inc, p); ``v0``,
    ``original``, ``v0r``, ``originalr`` (optionally ``-mstd0.5``) are AutoAugment policies.
    """
    head, *sections = config_str.split("-")
    if head == "rand":
        valid = RAND_KEYS
    elif head in POLICIES:
        valid = POLICY_KEYS
    else:
        raise ConfigError(
            f"unknown auto_augment {config_str!r}: it must start with 'rand' (RandAugment, e.g. "
            f"'rand-m9-mstd0.5-inc1') or name an AutoAugment policy {sorted(POLICIES)}"
        )
    values = {}
    for section in sections:
        match = re.fullmatch(r"([a-z]+)(\d.*)", section)
        if not match or match[1] not in valid:
            raise ConfigError(
                f"bad section {section!r} in auto_augment {config_str!r}: valid keys for {head!r} "
                f"are {sorted(valid)}, each followed by its number (e.g. m9, n2, mstd0.5, inc1)"
            )
        try:
            values[match[1]] = valid[match[1]](match[2])
        except ValueError:
            raise ConfigError(
                f"section {section!r} of auto_augment {config_str!r}: {match[2]!r} is not a number") from None
    return head, values


@dataclasses.dataclass(frozen=True)
class RandAugment:
    """timm's RandAugment: ``num_layers`` ops drawn uniformly with replacement, each gated by its prob."""

    ops: tuple
    num_layers: int = 2

    def __call__(self, image, seed):
        for layer_seed in split(seed, self.num_layers):
            s_choice, s_op = split(layer_seed, 2)
            image = apply_one_of(self.ops, randint(s_choice, 0, len(self.ops) - 1), image, s_op)
        return image


@dataclasses.dataclass(frozen=True)
class AutoAugment:
    """timm's AutoAugment: one sub-policy drawn uniformly, its ops applied in order."""

    policy: tuple

    def __call__(self, image, seed):
        width = len(self.policy[0])
        if any(len(sub) != width for sub in self.policy):
            raise ConfigError("AutoAugment sub-policies must have the same length")
        ops = [op for sub in self.policy for op in sub]
        s_choice, *s_ops = split(seed, 1 + width)
        sub = randint(s_choice, 0, len(self.policy) - 1)
        for slot, s_op in enumerate(s_ops):
            image = apply_one_of(ops, sub * width + slot, image, s_op)
        return image


def auto_augment_transform(config_str: str, hparams: Hparams = Hparams()) -> RandAugment | AutoAugment:
    """timm's rand_augment_transform / auto_augment_transform from a config string: (image, seed) -> image."""
    head, values = parse(config_str)
    hparams = dataclasses.replace(
        hparams,
        magnitude_std=_mstd(values.get("mstd", hparams.magnitude_std)),
        magnitude_max=values.get("mmax", hparams.magnitude_max),
    )
    if head == "rand":
        names = RAND_INCREASING_TRANSFORMS if values.get("inc", 0) else RAND_TRANSFORMS
        prob, magnitude = values.get("p", 0.5), values.get("m", LEVEL_DENOM)
        return RandAugment(tuple(AugmentOp(n, prob, magnitude, hparams) for n in names), values.get("n", 2))
    return AutoAugment(tuple(tuple(AugmentOp(n, p, m, hparams) for n, p, m in sub) for sub in POLICIES[head]))


def _mstd(value: float) -> float:
    return float("inf") if value > 100 else float(value)  # timm: mstd > 100 means uniform sampling
