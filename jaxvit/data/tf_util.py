"""The one place TensorFlow is imported: GPUs are hidden from it before any use."""

from __future__ import annotations

import os


def import_tf():
    """Imports TensorFlow for host-side input work only; it must never take a GPU from JAX."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf
