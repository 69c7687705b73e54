"""Metrics to TensorBoard event files, ``metrics.jsonl`` and the console (process 0 only)."""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if not self.enabled:
            return
        from jaxvit.data.tf_util import import_tf

        tf = import_tf()
        self._tf = tf
        self._tb = tf.summary.create_file_writer(workdir)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
        with self._tb.as_default(step=step):
            for k, v in scalars.items():
                self._tf.summary.scalar(k, v)
        self._tb.flush()
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._jsonl.close()
