"""torchvision's random colour and geometry transforms on PIL-valued images (ColorJitter,
RandomRotation, RandomAffine) and its ``p``-gated application, in TF ops made of the
Pillow-exact ops of autoaugment.py."""

from __future__ import annotations

import math

from jaxvit.data.autoaugment import blend, grayscale, permutation, quantize, split, uniform
from jaxvit.data.geometric import affine, f64, image_size, rotation_matrix
from jaxvit.data.tf_util import import_tf

tf = import_tf()


def color_jitter(image, seed, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """torchvision ColorJitter on a PIL image.

    Brightness/contrast/saturation factors are uniform in [max(0, 1 - v), 1 + v], the hue shift
    in [-hue, hue]; the adjustments run in a random order. The first three are Pillow blends that
    differ only in the image blended with (black, mean grey, greyscale), so each step picks that
    image and its factor by index instead of branching (a factor of 1 is an exact no-op).
    """
    s_order, *s_factor = split(seed, 5)
    spans = (brightness, contrast, saturation)
    factors = tf.stack([uniform(s, max(0.0, 1.0 - v), 1.0 + v) if v > 0 else tf.constant(1.0)
                        for s, v in zip(s_factor, spans)] + [tf.constant(1.0)])
    hue_factor = uniform(s_factor[3], -hue, hue)
    for step in tf.unstack(permutation(s_order, 4)):  # 0 brightness, 1 contrast, 2 saturation, 3 hue
        grey = grayscale(image)
        mean = tf.floor(tf.reduce_mean(tf.cast(grey, tf.float64)) + 0.5)
        degenerate = tf.gather(tf.stack([tf.zeros_like(grey), tf.cast(mean, tf.float32) + tf.zeros_like(grey), grey,
                                         grey]), tf.minimum(step, 2))
        blended = blend(degenerate, image, tf.gather(factors, step))
        image = tf.where(tf.equal(step, 3), adjust_hue(image, hue_factor), blended) if hue > 0 else blended
    return image


def adjust_hue(image, hue_factor):
    """torchvision adjust_hue: rotate the hue by ``hue_factor`` of a turn (in Pillow's 255-step hue units)."""
    steps = tf.math.floormod(tf.cast(tf.cast(hue_factor * 255.0, tf.int32), tf.float32), 256.0)
    return quantize(tf.image.adjust_hue(image / 255.0, steps / 255.0) * 255.0)


def random_rotation(image, seed, degrees, interpolation="nearest", fill=(0, 0, 0)):
    """torchvision RandomRotation(degrees): counter-clockwise angle uniform in ``degrees`` (lo, hi)."""
    angle = uniform(seed, float(degrees[0]), float(degrees[1]), tf.float64)
    return affine(image, rotation_matrix(angle, *image_size(image)), interpolation, fill)


def affine_matrix(angle, translate, scale, shear, width, height):
    """torchvision's inverse affine for a PIL image: rotate ``angle`` and shear ``shear`` (x) degrees,
    scale and translate about the image centre, as the output->input matrix Pillow takes."""
    rot, sx = (f64(v) * (math.pi / 180.0) for v in (angle, shear))
    cos, sin, tan = tf.cos(rot), tf.sin(rot), tf.tan(sx)
    scale = f64(scale)
    # forward map: scale * R(rot) @ [[1, -tan], [0, 1]]; its inverse (determinant scale**2):
    m0, m1, m3, m4 = (v / scale for v in (cos - sin * tan, sin + cos * tan, -sin, cos))
    cx, cy = tf.cast(width, tf.float64) * 0.5, tf.cast(height, tf.float64) * 0.5
    tx, ty = (f64(t) for t in translate)
    return m0, m1, m0 * (-cx - tx) + m1 * (-cy - ty) + cx, m3, m4, m3 * (-cx - tx) + m4 * (-cy - ty) + cy


def random_affine(image, seed, degrees, translate=0.0, scale=(1.0, 1.0), shear=0.0,
                  interpolation="nearest", fill=(0, 0, 0)):
    """torchvision RandomAffine(degrees, translate=(t, t), scale, shear): angle uniform in
    [-degrees, degrees], shift a whole number of pixels up to t * size, scale uniform in ``scale``,
    x-shear uniform in [-shear, shear] degrees."""
    s_angle, s_tx, s_ty, s_scale, s_shear = split(seed, 5)
    width, height = image_size(image)
    shift = [
        tf.round(uniform(s, -translate * tf.cast(n, tf.float64), translate * tf.cast(n, tf.float64), tf.float64))
        for s, n in ((s_tx, width), (s_ty, height))
    ]
    matrix = affine_matrix(
        uniform(s_angle, -float(degrees), float(degrees), tf.float64), shift,
        uniform(s_scale, float(scale[0]), float(scale[1]), tf.float64),
        uniform(s_shear, -float(shear), float(shear), tf.float64), width, height,
    )
    return affine(image, matrix, interpolation, fill)


def with_probability(op, p: float):
    """torchvision's ``if torch.rand(1) < p: apply``, on its own stream of the op's seed."""

    def run(image, seed):
        s_gate, s_op = split(seed, 2)
        return tf.cond(uniform(s_gate) < p, lambda: op(image, s_op), lambda: tf.identity(image))

    return run
