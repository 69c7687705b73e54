"""Input pipeline speed: img/s of a recipe's tf.data train stream per host core, next to the
train step's img/s for the same recipe (the pipeline should keep >= 3x ahead per core).

python benchmarks/bench_input.py --config=configs/vit_tiny_cifar10.py \
    --config.dataset=imagefolder --config.data_dir=../shared/data/cifar10-subset --sizes=32,224

Takes the recipe's augmentation as its config sets it (RandAugment, erasing, ...), any
``--config.key=value`` override as main.py does, and times ``--threads`` tf.data threads
(1 = one core). The step is jaxvit's jitted train step on this machine's devices, on a
synthetic batch of the recipe's global batch size (``--step_batch`` to change it).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/vit_tiny_cifar10.py", "recipe config", lock_config=True)
flags.DEFINE_list("sizes", ["32", "224"], "image sizes to time the pipeline at")
flags.DEFINE_integer("threads", 1, "tf.data threads (img/s is reported per thread = per core)")
flags.DEFINE_integer("batches", 40, "timed batches per size (after warm-up and one pass to fill the cache)")
flags.DEFINE_integer("step_batch", 0, "batch for the train-step timing (0: the recipe's global batch)")
flags.DEFINE_integer("step_steps", 3, "timed train steps per size (0: skip the step)")


def pipeline_img_per_s(config, threads: int, n_batches: int) -> float:
    import jax

    from jaxvit.data import pipeline
    from jaxvit.data.sources import get_source

    config.data_threads = threads
    source = get_source(config)
    batch = min(config.global_batch_size, source.size(config.train_split))
    it = pipeline.train_batches(config, source, batch, 0, jax.process_index(), jax.process_count())
    per_epoch = source.size(config.train_split) // batch
    for _ in range(per_epoch + 2):  # one pass fills the decode cache, as in a long run
        next(it)
    start = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch / (time.perf_counter() - start)


def step_img_per_s(config, batch: int, steps: int) -> float:
    from types import SimpleNamespace

    from benchmarks.bench import bench_jax

    kw = f"patch_size={config.patch_size}," if config.patch_size else ""
    args = SimpleNamespace(
        model=config.model, batch=batch, img_size=config.img_size, dtype=config.dtype,
        num_classes=max(config.num_classes, 10), steps=steps, warmup=1,
        model_args=kw + config.model_args, attention=config.get("attention", "auto"),
        remat=config.get("remat", "none"), transfer_dtype="float32", jax="train",
        cpu_dots=config.get("cpu_dots", "auto"), pad_multiple=0,
    )
    train = next(r for r in bench_jax(args) if r["task"] == "train")
    return batch / train["sec"]


def main(_):
    import jax

    base = FLAGS.config
    rows = []
    for size in [int(s) for s in FLAGS.sizes]:
        config = base.copy_and_resolve_references()
        with config.unlocked():
            config.img_size = size
        img_s = pipeline_img_per_s(config, FLAGS.threads, FLAGS.batches)
        per_core = img_s / FLAGS.threads
        step = step_img_per_s(config, FLAGS.step_batch or config.global_batch_size, FLAGS.step_steps) \
            if FLAGS.step_steps else float("nan")
        rows.append((size, img_s, per_core, step))
    aug = base.aug
    print(f"\n{base.model}  dataset {base.dataset}  aug: auto_augment={aug.get('auto_augment', '')!r} "
          f"reprob={aug.get('reprob', 0.0)}  repeated_aug={base.get('repeated_aug', 0)}  "
          f"threads {FLAGS.threads}  step on {jax.devices()[0].device_kind} x{jax.device_count()}")
    print(f"{'size':>6}{'input img/s':>14}{'per core':>12}{'step img/s':>13}{'input/step per core':>22}")
    for size, img_s, per_core, step in rows:
        print(f"{size:>6}{img_s:>14.0f}{per_core:>12.0f}{step:>13.1f}{per_core / step:>22.1f}")


if __name__ == "__main__":
    app.run(main)
