"""Per-example transforms in tf.data, with timm's parameter meanings.

Every random choice is a stateless op keyed by a per-example seed, so the
stream of augmented examples is a function of (seed, epoch, index): a resumed
run sees exactly the examples an uninterrupted one would.
"""

from __future__ import annotations

import functools

from jaxvit.data.crop import random_resized_crop, resize
from jaxvit.data.tf_util import import_tf
from jaxvit.errors import ConfigError


def center_crop(tf, image, size, crop_pct, method):
    """Resize the short side to size/crop_pct, then take the central size x size (timm eval)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (float(max(size)) / crop_pct) / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    image = resize(tf, image, new, method)
    top = (new[0] - size[0]) // 2
    left = (new[1] - size[1]) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size[0], size[1])


def squish_crop(tf, image, size, crop_pct, method):
    """timm eval crop_mode='squish': resize to floor(size / crop_pct) ignoring aspect, then the central size."""
    scaled = [int(s / crop_pct) for s in size]
    image = resize(tf, image, scaled, method)
    return tf.image.crop_to_bounding_box(
        image, (scaled[0] - size[0]) // 2, (scaled[1] - size[1]) // 2, size[0], size[1]
    )


def normalize(tf, image, mean, std):
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def transfers_uint8(config) -> bool:
    """``transfer_dtype='uint8'``: the transforms stop before normalization and emit uint8 images (0..255,
    rounded as timm's PIL images are); the train and eval steps normalize them on the device."""
    return config.get("transfer_dtype", "float32") == "uint8"


def to_uint8(tf, image):
    """Float pixel values as uint8: rounded to the nearest integer (tf.round, as before the uint8-valued ops)
    and clipped to 0..255, what timm's PIL images hold."""
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _finish(tf, config, image, size):
    """The image as it crosses to the device: normalized float32, or uint8 (``transfers_uint8``)."""
    if transfers_uint8(config):
        return tf.ensure_shape(to_uint8(tf, image), [*size, 3])
    return tf.ensure_shape(normalize(tf, image, config.mean, config.std), [*size, 3])


def random_crop(tf, image, seed, size, padding):
    """torchvision RandomCrop(size, padding): zero-pad each side by ``padding``, crop size at a uniform offset."""
    image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    shape = tf.shape(image)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    top = tf.random.stateless_uniform([], s1, 0, shape[0] - size[0] + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], s2, 0, shape[1] - size[1] + 1, dtype=tf.int32)
    return tf.image.crop_to_bounding_box(image, top, left, size[0], size[1])


def _flip(tf, image, seed, prob, flip):
    if prob <= 0:
        return image
    return tf.cond(tf.random.stateless_uniform([], seed) < prob, lambda: flip(image), lambda: image)


def _primary(tf, aug, size):
    """timm's primary stage: random resized crop (or squish resize), optional padded crop, flips."""

    def fn(image, seeds, extra):
        if aug.random_resized_crop and not aug.squish:
            image = random_resized_crop(tf, image, seeds[0], size, aug.scale, aug.ratio, aug.interpolation)
        else:
            image = resize(tf, image, size, aug.interpolation)
        if aug.crop_padding > 0:
            image = random_crop(tf, image, extra[0], size, aug.crop_padding)
        image = _flip(tf, image, seeds[1], aug.hflip, tf.image.flip_left_right)
        return _flip(tf, image, seeds[2], aug.vflip, tf.image.flip_up_down)

    return fn


def _affine_on(aug) -> bool:
    return bool(aug.affine_degrees or aug.affine_translate or aug.affine_shear or tuple(aug.affine_scale) != (1, 1))


def secondary_ops(config):
    """The uint8-valued stage after the flips, as [(op(image, seed) -> image)], in application order:
    RandomRotation, RandomAffine, then timm's auto-augment or colour jitter, then the pick-N policy."""
    from jaxvit.data import autoaugment as aa  # these import TensorFlow
    from jaxvit.data import geometric, pick, torchvision_ops

    aug = config.aug
    if aug.affine_interpolation not in geometric.INTERPOLATIONS[:3]:
        raise ConfigError(
            f"aug.affine_interpolation {aug.affine_interpolation!r} is not one of {geometric.INTERPOLATIONS[:3]}")
    ops = []
    if aug.rotation:
        ops.append(functools.partial(
            torchvision_ops.random_rotation, degrees=(-aug.rotation, aug.rotation),
            interpolation=aug.affine_interpolation))
    if _affine_on(aug):
        ops.append(functools.partial(
            torchvision_ops.random_affine, degrees=aug.affine_degrees, translate=aug.affine_translate,
            scale=tuple(aug.affine_scale), shear=aug.affine_shear, interpolation=aug.affine_interpolation))
    if aug.auto_augment:
        ops.append(aa.auto_augment_transform(aug.auto_augment, auto_augment_hparams(config)))
    elif aug.color_jitter:  # timm turns colour jitter off when auto-augment is on
        jitter = float(aug.color_jitter)
        ops.append(functools.partial(
            torchvision_ops.color_jitter, brightness=jitter, contrast=jitter, saturation=jitter))
    if aug.pick_ops:
        size = (config.img_size, config.img_size)
        ops.append(pick.pick_policy(aug.pick_ops, aug.pick_min, aug.pick_max, size, aug.interpolation))
    return ops


def auto_augment_hparams(config):
    """timm's aa_params: fill = img_mean (the normalization mean in 0..255), the train interpolation."""
    from jaxvit.data import autoaugment as aa
    from jaxvit.data import geometric

    interpolation = config.aug.aa_interpolation or config.aug.interpolation
    if interpolation not in geometric.INTERPOLATIONS:
        raise ConfigError(f"aug.aa_interpolation {interpolation!r} is not one of {geometric.INTERPOLATIONS} (or '')")
    img_mean = tuple(min(255, round(255 * m)) for m in config.mean)
    return aa.Hparams(img_mean=img_mean, interpolation=interpolation)


def _erasing(config):
    aug = config.aug
    if aug.reprob <= 0:
        return None
    from jaxvit.data import erasing

    if aug.remode not in erasing.ERASE_MODES or aug.recount < 1:
        raise ConfigError(
            f"aug.remode must be one of {erasing.ERASE_MODES} (got {aug.remode!r}) and aug.recount >= 1")
    if transfers_uint8(config):  # timm erases the normalized image, which only exists on the device then
        raise ConfigError(f"aug.reprob={aug.reprob} (random erasing, on the normalized image) needs "
                          "--config.transfer_dtype=float32 (or --config.aug.reprob=0)")
    return functools.partial(erasing.random_erasing, probability=aug.reprob, mode=aug.remode, max_count=aug.recount)


def train_transform(config):
    """(image uint8, seed[2]) -> float32 normalized image of config.img_size (uint8 with
    ``transfer_dtype='uint8'``: the step normalizes it; no erasing then).

    timm's create_transform order: crop/resize -> flips -> [rotation, affine, auto-augment or
    colour jitter, pick-N policy on uint8 values] -> normalize -> random erasing.
    """
    tf = import_tf()
    size = (config.img_size, config.img_size)
    primary = _primary(tf, config.aug, size)
    secondary = secondary_ops(config)
    erasing = _erasing(config)

    def fn(image, seed):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        extra = tf.random.experimental.stateless_split(seeds[3], 3)  # seeds[3] feeds only optional stages
        image = primary(image, seeds, extra)
        image = tf.clip_by_value(image, 0.0, 255.0)
        if secondary:
            op_seeds = tf.random.experimental.stateless_split(extra[1], len(secondary))
            image = tf.round(image)  # uint8 values, as timm's PIL images
            for op, op_seed in zip(secondary, tf.unstack(op_seeds)):
                image = op(image, op_seed)
        image = _finish(tf, config, image, size)
        return image if erasing is None else erasing(image, extra[2])

    return fn


def eval_transform(config):
    """image uint8 -> timm's eval crop of config.img_size, normalized float32 (uint8 with
    ``transfer_dtype='uint8'``)."""
    tf = import_tf()
    size = (config.img_size, config.img_size)

    def fn(image):
        if config.aug.squish:
            image = squish_crop(tf, image, size, config.crop_pct, config.aug.interpolation)
        else:
            image = center_crop(tf, image, size, config.crop_pct, config.aug.interpolation)
        return _finish(tf, config, tf.clip_by_value(image, 0.0, 255.0), size)

    return fn
