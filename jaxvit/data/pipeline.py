"""Batches for one process: deterministic, resumable train stream and a padded eval pass.

The train stream is epochs of a seeded per-epoch shuffle; augmentation seeds
come from (seed, epoch, index), so the stream's position is just the number of
examples consumed and resuming at step ``s`` skips undecoded records.
With ``repeated_aug = r`` each shuffled example comes r times in a row (indices
i*r .. i*r+r-1, so r different augmentations): a training epoch of n examples
then holds n/r distinct ones, r times each, like timm's RASampler, and a
shuffle pass over the data spans r training epochs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np

from jaxvit.data import transforms
from jaxvit.data.sources import Source
from jaxvit.data.tf_util import graph_fn, import_tf
from jaxvit.errors import DataError


def _options(tf, config):
    opts = tf.data.Options()
    opts.deterministic = True
    opts.threading.private_threadpool_size = config.data_threads or 0
    opts.experimental_optimization.map_parallelization = True
    # No autotuning. Its model thread (TF 2.21) sleeps between passes, twice as long each time up
    # to 60 s, and dropping the iterator waits out that sleep: `make train` sat 35-60 s after its
    # last step in 7 of 9 runs here (gdb: ~RootDataset::Iterator joining Model::OptimizeLoop), and
    # a preempted run would sit as long before it exits. The maps' parallelism is fixed instead.
    opts.autotune.enabled = False
    return opts


def map_threads(config) -> int:
    """The maps' parallelism (fixed: autotuning is off): --config.data_threads, else every core
    this process may run on."""
    if config.data_threads:
        return int(config.data_threads)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def train_batches(
    config, source: Source, global_batch: int, start_step: int, process_index: int, process_count: int
) -> Iterator[dict[str, np.ndarray]]:
    """Infinite numpy batches of this process's part of each global batch, from ``start_step``
    (``train_dataset``'s batches)."""
    return train_dataset(config, source, global_batch, start_step, process_index, process_count).as_numpy_iterator()


def train_dataset(config, source: Source, global_batch: int, start_step: int, process_index: int, process_count: int):
    """The tf.data stream of this process's part of each global batch, from ``start_step``.

    Every process walks the same seeded global order and keeps every
    ``process_count``-th example (records are skipped before decoding), so the
    global batch at a step holds the same examples whatever the host count.
    """
    tf = import_tf()
    split = config.train_split
    n = source.size(split)
    check_batch_fits(source, split, global_batch)
    base = source.make(split, 0, 1)
    if config.cache_train:
        base = base.cache()
    repeats = max(1, int(config.get("repeated_aug", 0)))
    start_epoch, offset = divmod(start_step * global_batch, n * repeats)
    first_example, first_repeat = divmod(offset, repeats)
    buffer = min(n, config.shuffle_buffer)
    seed = int(config.seed)

    def skip_in_start_epoch(ds, e, count):
        return ds.skip(tf.where(tf.equal(e, start_epoch), tf.constant(count, tf.int64), tf.constant(0, tf.int64)))

    def epoch(e):
        # traced under graph_fn below: the maps built here are traced without AutoGraph too
        ds = base.shuffle(buffer, seed=seed * 100_003 + e, reshuffle_each_iteration=False)
        ds = skip_in_start_epoch(ds.enumerate().map(lambda i, ex: (e, i, ex)), e, first_example)
        if repeats == 1:
            return ds
        return skip_in_start_epoch(ds.flat_map(repeat), e, first_repeat)

    def repeat(e, i, ex):
        """Repeated augmentation (timm's RASampler): ``repeats`` consecutive copies, each its own index."""
        copies = tf.data.Dataset.from_tensors((e, i, ex)).repeat(repeats).enumerate()
        return copies.map(lambda r, c: (c[0], c[1] * repeats + r, c[2]))

    augment = transforms.train_transform(config)

    def prepare(e, i, ex):
        ex_seed = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + e, i])
        return {"image": augment(ex["image"], ex_seed), "label": ex["label"]}

    ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(graph_fn(epoch))
    ds = ds.shard(process_count, process_index).map(graph_fn(prepare), num_parallel_calls=map_threads(config))
    local_batch = global_batch // process_count
    return ds.batch(local_batch, drop_remainder=True).prefetch(2).with_options(_options(tf, config))


def check_batch_fits(source: Source, split: str, global_batch: int) -> None:
    """A train split smaller than one global batch cannot fill a step (every batch is full)."""
    n = source.size(split)
    if n < global_batch:
        raise DataError(
            f"train split {split!r} of {source.name} has {n} examples, fewer than global_batch_size "
            f"{global_batch}; set --config.global_batch_size to at most {n} or train on a larger split"
        )


def num_eval_batches(source: Source, split: str, local_batch: int, process_count: int) -> int:
    """The same count on every host: enough batches for the largest shard. Asked of the source, not
    computed: tfds's even_splits of 'train+test' splits each part, so shards may differ by more than 1."""
    largest = max(source.local_examples(split, i, process_count) for i in range(process_count))
    return max(1, math.ceil(largest / local_batch))


def eval_batches(
    config, source: Source, split: str, local_batch: int, process_index: int, process_count: int
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the split; the tail is padded with ``mask == 0`` examples, nothing is dropped
    (``eval_dataset``'s batches)."""
    return eval_dataset(config, source, split, local_batch, process_index, process_count).as_numpy_iterator()


def eval_dataset(config, source: Source, split: str, local_batch: int, process_index: int, process_count: int):
    """The tf.data pass of ``eval_batches``."""
    tf = import_tf()
    source.check_split(split)
    n_batches = num_eval_batches(source, split, local_batch, process_count)
    transform = transforms.eval_transform(config)
    ds = source.make(split, process_index, process_count)
    if config.cache_eval:
        ds = ds.cache()
    ds = ds.map(
        graph_fn(lambda ex: {"image": transform(ex["image"]), "label": ex["label"], "mask": tf.constant(1.0)}),
        num_parallel_calls=map_threads(config),
    )
    pad = {
        "image": tf.zeros([config.img_size, config.img_size, 3],
                          tf.uint8 if transforms.transfers_uint8(config) else tf.float32),
        "label": tf.constant(0, tf.int32),
        "mask": tf.constant(0.0),
    }
    ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat())
    ds = ds.take(n_batches * local_batch).batch(local_batch).prefetch(2)
    return ds.with_options(_options(tf, config))


def synthetic_batches(config, local_batch: int, num_classes: int, seed: int = 0):
    """Random normalized images and labels, without TensorFlow (benchmarks, GPU hosts without TF);
    uniform uint8 images with ``transfer_dtype='uint8'``."""
    rng = np.random.default_rng(seed)
    shape = (local_batch, config.img_size, config.img_size, 3)
    if transforms.transfers_uint8(config):
        images = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        images = rng.standard_normal(shape, np.float32)
    labels = rng.integers(0, num_classes, (local_batch,), dtype=np.int32)
    while True:
        yield {"image": images, "label": labels}
