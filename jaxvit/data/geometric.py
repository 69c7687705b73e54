"""Pillow's geometry in TF ops: ``Image.transform(AFFINE)`` with its nearest, bilinear and bicubic
sampling, and ``Image.rotate``'s matrix, in float64 as Pillow computes them. timm's rotate, shear
and translate (autoaugment.py) and torchvision's RandomRotation/RandomAffine (torchvision_ops.py)
are made of these."""

from __future__ import annotations

import math

from jaxvit.data.tf_util import import_tf
from jaxvit.errors import ConfigError

tf = import_tf()

FILL = (128, 128, 128)  # timm's fill colour when hparams carry no img_mean
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "random")  # 'random': bilinear or bicubic per call


def f64(value):
    """A float64 tensor; Python numbers go straight to float64 (tf.cast would pass through float32)."""
    return tf.cast(value, tf.float64) if tf.is_tensor(value) else tf.constant(value, tf.float64)


def _cubic(v1, v2, v3, v4, d):
    """Pillow's bicubic tap combination (cubic convolution, a = -1), in its evaluation order."""
    p2 = -v1 + v3
    p3 = 2.0 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def affine(image, matrix, interpolation="bilinear", fill=FILL):
    """Image.transform(size, AFFINE, matrix, resample, fillcolor).

    Output pixel centre (x + .5, y + .5) reads the input at (a x + b y + c, d x + e y + f);
    points outside the input take ``fill``, neighbours beyond the edge are clamped.
    """
    if interpolation not in INTERPOLATIONS[:3]:
        raise ConfigError(f"interpolation {interpolation!r} is not one of {INTERPOLATIONS[:3]}")
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    a, b, c, d, e, f = (f64(m) for m in matrix)
    ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float64) + 0.5, tf.range(w, dtype=tf.float64) + 0.5, indexing="ij")
    xin, yin = a * xs + b * ys + c, d * xs + e * ys + f
    inside = (xin >= 0) & (xin < tf.cast(w, tf.float64)) & (yin >= 0) & (yin < tf.cast(h, tf.float64))
    taps = {"nearest": [0], "bilinear": [0, 1], "bicubic": [-1, 0, 1, 2]}[interpolation]
    if interpolation == "nearest":
        x0, y0 = tf.floor(xin), tf.floor(yin)
    else:
        x0, y0 = tf.floor(xin - 0.5), tf.floor(yin - 0.5)
    rows = [tf.clip_by_value(tf.cast(y0 + t, tf.int32), 0, h - 1) * w for t in taps]
    cols = [tf.clip_by_value(tf.cast(x0 + t, tf.int32), 0, w - 1) for t in taps]
    flat = tf.cast(tf.reshape(image, [-1, 3]), tf.float64)
    grid = [[tf.gather(flat, r + c) for c in cols] for r in rows]  # taps x taps of [H, W, 3]
    if interpolation == "nearest":
        out = grid[0][0]
    else:
        dx, dy = (xin - 0.5 - x0)[..., None], (yin - 0.5 - y0)[..., None]
        combine = _lerp if interpolation == "bilinear" else _cubic
        out = combine(*[combine(*row, dx) for row in grid], dy)
        out = tf.floor(tf.clip_by_value(out, 0.0, 255.0))
    return tf.where(inside[..., None], tf.cast(out, tf.float32), tf.constant(fill, tf.float32))


def _lerp(p, q, t):
    """Pillow's BILINEAR macro."""
    return p + (q - p) * t


def rotation_matrix(degrees, width, height):
    """Image.rotate's output->input matrix: ``degrees`` counter-clockwise about the image centre."""
    angle = -tf.math.floormod(f64(degrees), 360.0) * (math.pi / 180.0)
    cos, sin = (tf.round(v * 1e15) / 1e15 for v in (tf.cos(angle), tf.sin(angle)))  # Pillow rounds to 15 digits
    cx, cy = tf.cast(width, tf.float64) / 2.0, tf.cast(height, tf.float64) / 2.0
    return cos, sin, cos * -cx + sin * -cy + 0.0 + cx, -sin, cos, -sin * -cx + cos * -cy + 0.0 + cy


def image_size(image):
    """(width, height) of an HWC image tensor, in the order PIL's size and the matrices here use."""
    shape = tf.shape(image)
    return shape[1], shape[0]  # PIL order: width, height
