"""Per-example transforms in tf.data, with timm's parameter meanings.

Every random choice is a stateless op keyed by a per-example seed, so the
stream of augmented examples is a function of (seed, epoch, index): a resumed
run sees exactly the examples an uninterrupted one would.
"""

from __future__ import annotations

from jaxvit.data.tf_util import import_tf


def _resize(tf, image, size, method):
    return tf.image.resize(image, size, method=method, antialias=True)


def random_resized_crop(tf, image, seed, size, scale, ratio, method):
    """timm's RandomResizedCrop: area fraction in ``scale``, aspect in ``ratio`` (log-uniform)."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    area = tf.random.stateless_uniform([], s1, scale[0], scale[1]) * h * w
    log_ratio = tf.random.stateless_uniform(
        [], s2, tf.math.log(float(ratio[0])), tf.math.log(float(ratio[1]))
    )
    aspect = tf.exp(log_ratio)
    cw = tf.minimum(tf.round(tf.sqrt(area * aspect)), w)
    ch = tf.minimum(tf.round(tf.sqrt(area / aspect)), h)
    s3, s4 = tf.unstack(tf.random.experimental.stateless_split(s1, 2))
    top = tf.floor(tf.random.stateless_uniform([], s3) * (h - ch + 1))
    left = tf.floor(tf.random.stateless_uniform([], s4) * (w - cw + 1))
    crop = tf.image.crop_to_bounding_box(
        image, tf.cast(top, tf.int32), tf.cast(left, tf.int32), tf.cast(ch, tf.int32), tf.cast(cw, tf.int32)
    )
    return _resize(tf, crop, size, method)


def center_crop(tf, image, size, crop_pct, method):
    """Resize the short side to size/crop_pct, then take the central size x size (timm eval)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (float(max(size)) / crop_pct) / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    image = _resize(tf, image, new, method)
    top = (new[0] - size[0]) // 2
    left = (new[1] - size[1]) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size[0], size[1])


def normalize(tf, image, mean, std):
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def train_transform(config):
    """(image uint8, seed[2]) -> float32 normalized image of config.img_size."""
    tf = import_tf()
    size = (config.img_size, config.img_size)
    aug = config.aug

    def fn(image, seed):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        if aug.random_resized_crop:
            image = random_resized_crop(
                tf, image, seeds[0], size, aug.scale, aug.ratio, aug.interpolation
            )
        else:
            image = _resize(tf, image, size, aug.interpolation)
        if aug.hflip > 0:
            flip = tf.random.stateless_uniform([], seeds[1]) < aug.hflip
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        if aug.vflip > 0:
            flip = tf.random.stateless_uniform([], seeds[2]) < aug.vflip
            image = tf.cond(flip, lambda: tf.image.flip_up_down(image), lambda: image)
        image = tf.clip_by_value(image, 0.0, 255.0)
        return tf.ensure_shape(normalize(tf, image, config.mean, config.std), [*size, 3])

    return fn


def eval_transform(config):
    tf = import_tf()
    size = (config.img_size, config.img_size)

    def fn(image):
        image = center_crop(tf, image, size, config.crop_pct, config.aug.interpolation)
        image = tf.clip_by_value(image, 0.0, 255.0)
        return tf.ensure_shape(normalize(tf, image, config.mean, config.std), [*size, 3])

    return fn
