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
