"""Pick 1..N of a list of ops per image (seed 001's Perceiver augmentation), in TF ops."""

from __future__ import annotations

import functools

from jaxvit.data.autoaugment import autocontrast, enhance_sharpness, equalize, quantize, randint, split
from jaxvit.data.crop import random_resized_crop
from jaxvit.data.tf_util import import_tf
from jaxvit.data.torchvision_ops import color_jitter, random_affine, random_rotation, with_probability
from jaxvit.errors import ConfigError

tf = import_tf()

# The seed's source (395t/coding-assignment-week-8-vit-2, src/perceiver/lib/train_utils.py) builds
# rt = RandomChoice(ops) and applies RandomChoice([rt, rt*2, rt*3, rt*4]): 1..4 steps, each step an
# op drawn uniformly with replacement. Its flips, RandomEqualize, RandomAutocontrast and
# RandomAdjustSharpness are torchvision's Random* ops at their default p=0.5: once drawn, they
# still apply only half the time. ColorJitter, RandomRotation, RandomAffine, RandomResizedCrop
# always apply.
PICK_PROB = {"hflip": 0.5, "vflip": 0.5, "equalize": 0.5, "autocontrast": 0.5, "sharpness": 0.5}


def pick_transforms(size, interpolation: str) -> dict:
    """The seed's ops with its settings: name -> (image, seed) -> image (fill 0, torchvision's
    default), each gated by its torchvision probability (``PICK_PROB``, else always)."""
    def rrc(image, seed):
        return quantize(random_resized_crop(tf, image, seed, size, (0.5, 1.0), (3 / 4, 4 / 3), interpolation))

    ops = {
        "color_jitter": lambda image, seed: color_jitter(image, seed, 0.2, 0.2, 0.2, 0.2),
        "hflip": lambda image, seed: tf.image.flip_left_right(image),
        "vflip": lambda image, seed: tf.image.flip_up_down(image),
        "rotate": lambda image, seed: random_rotation(image, seed, (0.0, 180.0)),
        "affine": lambda image, seed: random_affine(image, seed, 15, 0.2, (0.8, 1.2), 15, "bilinear"),
        "equalize": lambda image, seed: equalize(image),
        "autocontrast": lambda image, seed: autocontrast(image),
        "sharpness": lambda image, seed: enhance_sharpness(image, 2.0),
        "random_resized_crop": rrc,
    }
    return {name: with_probability(op, PICK_PROB[name]) if name in PICK_PROB else op for name, op in ops.items()}


PICK_OPS = ("color_jitter", "hflip", "vflip", "rotate", "affine", "equalize", "autocontrast", "sharpness",
            "random_resized_crop")


def pick_plan(seed, num_ops: int, pick_min: int, pick_max: int):
    """(count, choices, op seeds): apply ops ``choices[:count]``, count uniform in [pick_min, pick_max],
    each choice uniform over the ops, with replacement (as the seed's RandomChoice)."""
    s_count, s_choice, s_ops = split(seed, 3)
    choices = tf.random.stateless_uniform([pick_max], s_choice, 0, num_ops, dtype=tf.int32)
    return randint(s_count, pick_min, pick_max), choices, split(s_ops, pick_max)


def pick_policy(names, pick_min: int, pick_max: int, size, interpolation: str):
    """For each image, a random count in [pick_min, pick_max] of steps, each one op drawn from ``names``
    with replacement and applied with its torchvision probability (see ``PICK_PROB``)."""
    names = tuple(names)
    known = pick_transforms(size, interpolation)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown pick_ops {unknown}; valid ops: {list(PICK_OPS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"pick_ops {names} lists an op twice; list each once (draws are uniform over the list)")
    if not 1 <= pick_min <= pick_max:
        raise ConfigError(f"need 1 <= pick_min ({pick_min}) <= pick_max ({pick_max})")
    ops = [known[n] for n in names]

    def apply(image, seed):
        count, choices, op_seeds = pick_plan(seed, len(ops), pick_min, pick_max)
        for k in range(pick_max):
            branches = [functools.partial(tf.identity, image)]
            branches += [functools.partial(op, image, op_seeds[k]) for op in ops]
            image = tf.switch_case(tf.where(k < count, choices[k] + 1, 0), branches)
        return image

    return apply


