"""The one place TensorFlow is imported: GPUs are hidden from it before any use.

Call ``import_tf()`` when building a pipeline, never inside a function tf.data
traces (a ``map`` function): AutoGraph would try to convert it, fail on
``os.environ.setdefault`` and print a warning holding the whole process environment.
Traced code uses the ``tf`` its builder captured.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def import_tf():
    """Imports TensorFlow for host-side input work only; it must never take a GPU from JAX."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf


def graph_fn(fn):
    """``fn`` for tf.data's ``map``/``flat_map``, traced as written: AutoGraph's rewrite is
    skipped. The input functions here are TF ops without Python control flow on tensors (their
    branches are ``tf.cond``/``tf.where``), so the rewrite finds nothing to convert, and it cost
    every run's start seconds of parsing and transforming source: a 2-step main.py run of a
    tiny ViT on digits took 15.3 and 17.4 s with it, 11.8 s without (2-core CPU, warm cache)."""
    return import_tf().autograph.experimental.do_not_convert(fn)
