"""timm's RandomErasing on the normalized image, in TF ops (stateless, per-example seeds)."""

from __future__ import annotations

import functools

from jaxvit.data.autoaugment import randint, split, uniform
from jaxvit.data.crop import box_draws
from jaxvit.data.tf_util import import_tf
from jaxvit.errors import ConfigError

tf = import_tf()


def random_erasing(image, seed, probability, mode="pixel", max_count=1, min_area=0.02, max_area=1 / 3,
                   min_aspect=0.3, attempts=10):
    """timm's RandomErasing: with ``probability``, erase 1..max_count boxes (area fraction in
    [min_area, max_area] / count, log-uniform aspect in [min_aspect, 1/min_aspect]) with zeros
    ('const'), one normal colour per box ('rand') or normal noise per pixel ('pixel')."""
    if mode not in ERASE_MODES:
        raise ConfigError(f"remode {mode!r} is not one of {ERASE_MODES}")
    s_apply, s_count, *s_boxes = split(seed, 2 + max_count)
    count = randint(s_count, 1, max_count)
    erased = image
    for k, s_box in enumerate(s_boxes):
        box = functools.partial(_erase_box, s_box, count, mode, (min_area, max_area), min_aspect, attempts)
        erased = tf.cond(k < count, functools.partial(box, erased), functools.partial(tf.identity, erased))
    return tf.cond(uniform(s_apply) > probability, lambda: image, lambda: erased)


ERASE_MODES = ("const", "rand", "pixel")


def _erase_box(seed, count, mode, area_range, min_aspect, attempts, image):
    """One box: the first of ``attempts`` draws that fits inside the image, else no box."""
    s_area, s_aspect, s_top, s_left, s_fill = split(seed, 5)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    area = tf.cast(h * w, tf.float32) / tf.cast(count, tf.float32)
    bh, bw = box_draws(tf, s_area, s_aspect, attempts, area_range, (area,), (min_aspect, 1 / min_aspect))
    bh, bw = tf.cast(tf.round(bh), tf.int32), tf.cast(tf.round(bw), tf.int32)
    fits = (bw < w) & (bh < h)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    bh, bw = (tf.where(fits[first], v[first], 0) for v in (bh, bw))  # no fit: an empty box
    top, left = randint(s_top, 0, h - bh), randint(s_left, 0, w - bw)
    ys, xs = tf.range(h)[:, None], tf.range(w)[None, :]
    inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)
    if mode == "pixel":
        fill = tf.random.stateless_normal(tf.shape(image), s_fill)
    elif mode == "rand":
        fill = tf.random.stateless_normal([3], s_fill) + tf.zeros_like(image)
    else:
        fill = tf.zeros_like(image)
    return tf.where(inside[..., None], fill, image)
