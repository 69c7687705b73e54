"""Top-5 classes for images: python -m jaxvit.predict --checkpoint DIR IMAGE [IMAGE ...].

DIR is a train workdir (its latest checkpoint) or a converted checkpoint; the
model, its keywords and the class names come from the checkpoint's metadata,
preprocessing (size, mean, std, crop) from the workdir's config.json if present.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np
from flax import nnx


def load(directory: str):
    """(eval-mode model, class names, preprocessing dict) from a checkpoint directory."""
    import jaxvit
    from jaxvit.train import checkpoint as ckpt_lib

    trees, meta = ckpt_lib.read_model_checkpoint(directory)
    name = meta.get("model")
    if not name:
        raise ValueError(f"{directory}: checkpoint metadata names no model")
    model = jaxvit.create_model(name, **meta.get("kwargs", {}))
    ckpt_lib.assign(model, trees, source=f"checkpoint {directory}")
    model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    cfg = dict(model.pretrained_cfg)
    config_file = os.path.join(directory, "config.json")
    if os.path.exists(config_file):
        with open(config_file) as f:
            train_cfg = json.load(f)
        cfg.update(mean=train_cfg["mean"], std=train_cfg["std"], crop_pct=train_cfg["crop_pct"])
    size = meta.get("kwargs", {}).get("img_size") or cfg["input_size"][0]
    cfg["img_size"] = size if isinstance(size, int) else size[0]
    names = meta.get("class_names") or _class_names_of(directory)
    return model, names, cfg


def _class_names_of(directory: str) -> list[str] | None:
    from jaxvit.train import checkpoint as ckpt_lib

    ckpt_dir = os.path.join(directory, "checkpoints")
    steps = ckpt_lib.latest_steps(ckpt_dir)
    if not steps:
        return None
    with open(os.path.join(ckpt_dir, str(steps[-1]), "meta", "metadata")) as f:
        return json.load(f).get("class_names")


def preprocess(paths: list[str], cfg: dict) -> np.ndarray:
    import ml_collections

    from jaxvit.data.tf_util import import_tf
    from jaxvit.data.transforms import center_crop, normalize

    tf = import_tf()
    c = ml_collections.ConfigDict(cfg)
    size = (c.img_size, c.img_size)
    out = []
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"image {p!r} not found")
        image = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
        image = center_crop(tf, image, size, c.crop_pct, c.get("interpolation", "bicubic"))
        out.append(normalize(tf, tf.clip_by_value(image, 0.0, 255.0), c.mean, c.std).numpy())
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="train workdir or converted checkpoint dir")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("images", nargs="+")
    args = p.parse_args(argv)
    try:
        model, names, cfg = load(args.checkpoint)
        images = preprocess(args.images, cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    probs = np.asarray(jax.nn.softmax(model(images), axis=-1))
    for path, row in zip(args.images, probs):
        print(path)
        for i in np.argsort(-row)[: args.top]:
            label = names[i] if names and i < len(names) else str(i)
            print(f"  {row[i]:7.2%}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
