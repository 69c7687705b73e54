"""The one place TensorFlow is imported: GPUs are hidden from it before any use.

Call ``import_tf()`` when building a pipeline, never inside a function tf.data
traces (a ``map`` function): AutoGraph would try to convert it, fail on
``os.environ.setdefault`` and print a warning holding the whole process environment.
Traced code uses the ``tf`` its builder captured.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys


@functools.cache
def import_tf():
    """Imports TensorFlow for host-side input work only; it must never take a GPU from JAX."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _without_keras_at_import():
        import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf


@contextlib.contextmanager
def _without_keras_at_import():
    """TensorFlow's import ends by importing Keras's optimizers (to register them for
    SavedModel), ~1.1 of its ~4.2 s here (with scikit-learn, which Keras then imports); tf.data
    needs neither. While TensorFlow imports, ``keras`` and ``tf_keras`` read as absent, which TF
    catches; afterwards they import as usual (``tf.keras`` still loads on first use). Measured:
    ``import tensorflow`` 4.21 and 4.27 s, 3.05 and 3.19 s this way (2-core CPU, TF 2.21,
    2026-11-28, a script timing the import in fresh processes)."""
    blocked = [m for m in ("keras", "tf_keras") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # an import of it raises ModuleNotFoundError
    try:
        yield
    finally:
        for m in blocked:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]


def graph_fn(fn):
    """``fn`` for tf.data's ``map``/``flat_map``, traced as written: AutoGraph's rewrite is
    skipped. The input functions here are TF ops without Python control flow on tensors (their
    branches are ``tf.cond``/``tf.where``), so the rewrite finds nothing to convert, and it cost
    every run's start seconds of parsing and transforming source: a 2-step main.py run of a
    tiny ViT on digits took 15.3 and 17.4 s with it, 11.8 s without (2-core CPU, warm cache)."""
    return import_tf().autograph.experimental.do_not_convert(fn)
