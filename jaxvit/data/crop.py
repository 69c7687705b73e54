"""Box sampling and crops shared by the transforms: timm's RandomResizedCrop, and the one
"up to N tries of (area fraction, log-uniform aspect)" draw that it and RandomErasing use.

Functions take the TensorFlow module as their first argument (``transforms`` passes it), so
importing this module does not import TensorFlow.
"""

from __future__ import annotations

import math


def box_draws(tf, s_area, s_aspect, attempts: int, area_range, area_factors, ratio_range):
    """``attempts`` candidate boxes as unrounded (sqrt(a * r), sqrt(a / r)): area ``a`` a
    fraction uniform in ``area_range`` of the product of ``area_factors`` (multiplied in that
    order, as each caller's reference does), aspect ``r`` log-uniform in ``ratio_range``."""
    target = tf.random.stateless_uniform([attempts], s_area, area_range[0], area_range[1])
    for factor in area_factors:
        target = target * factor
    log_lo, log_hi = math.log(float(ratio_range[0])), math.log(float(ratio_range[1]))
    aspect = tf.exp(tf.random.stateless_uniform([attempts], s_aspect, log_lo, log_hi))
    return tf.sqrt(target * aspect), tf.sqrt(target / aspect)


def resize(tf, image, size, method):
    return tf.image.resize(image, size, method=method, antialias=True)


RRC_ATTEMPTS = 10  # timm/torchvision: tries before the central-crop fallback


def rrc_box(tf, shape, seed, scale, ratio):
    """timm's RandomResizedCrop box (top, left, height, width) for an image of ``shape`` (h, w).

    Up to 10 draws of (area fraction in ``scale``, log-uniform aspect in ``ratio``); the first
    whose rounded width and height fit is taken, at a uniform position; if none fits, the
    central crop of the whole image with its aspect clamped into ``ratio``.
    """
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    s_area, s_ratio, s_top, s_left = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    cw, ch = box_draws(tf, s_area, s_ratio, RRC_ATTEMPTS, scale, (h, w), ratio)
    cw, ch = tf.round(cw), tf.round(ch)
    fits = (cw <= w) & (ch <= h)
    first = tf.argmax(tf.cast(fits, tf.int32))
    in_ratio = w / h
    lo, hi = float(min(ratio)), float(max(ratio))
    fb_w = tf.where(in_ratio > hi, tf.round(h * hi), w)
    fb_h = tf.where(in_ratio < lo, tf.round(w / lo), h)
    found = tf.reduce_any(fits)
    cw = tf.where(found, tf.gather(cw, first), fb_w)
    ch = tf.where(found, tf.gather(ch, first), fb_h)
    top = tf.where(found, tf.floor(tf.random.stateless_uniform([], s_top) * (h - ch + 1)), tf.floor((h - ch) / 2))
    left = tf.where(found, tf.floor(tf.random.stateless_uniform([], s_left) * (w - cw + 1)), tf.floor((w - cw) / 2))
    return [tf.cast(v, tf.int32) for v in (top, left, ch, cw)]


def random_resized_crop(tf, image, seed, size, scale, ratio, method):
    """timm's RandomResizedCrop: the box of ``rrc_box``, resized to ``size``."""
    top, left, ch, cw = rrc_box(tf, tf.shape(image), seed, scale, ratio)
    return resize(tf, tf.image.crop_to_bounding_box(image, top, left, ch, cw), size, method)
