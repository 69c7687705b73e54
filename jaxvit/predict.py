"""Top-5 classes for images: python -m jaxvit.predict --checkpoint DIR [--ema] IMAGE [IMAGE ...].

DIR is a train workdir (its latest checkpoint), a workdir's ``best/`` or a converted
checkpoint; ``--ema`` takes its EMA weights. The model, its keywords and the class names
come from the checkpoint's metadata, preprocessing (size, mean, std, crop) from its meta
(``best/``) or the workdir's config.json if present.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np
from flax import nnx

from jaxvit.errors import CheckpointError, report


def load(directory: str, ema: bool = False):
    """(eval-mode model, class names, preprocessing dict) from a checkpoint directory."""
    import jaxvit
    from jaxvit import weights

    found = weights.locate(directory)
    meta = found.meta
    name = meta.get("model")
    if not name:
        raise CheckpointError(f"{found.directory}: checkpoint metadata names no model")
    model = jaxvit.create_model(name, checkpoint=directory, ema=ema)
    model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    cfg = dict(model.pretrained_cfg)
    config_file = os.path.join(found.workdir or found.directory, "config.json")
    if meta.get("preprocess"):
        cfg.update(meta["preprocess"])
    elif os.path.exists(config_file):
        with open(config_file) as f:
            train_cfg = json.load(f)
        cfg.update(mean=train_cfg["mean"], std=train_cfg["std"], crop_pct=train_cfg["crop_pct"])
    size = meta.get("kwargs", {}).get("img_size") or cfg["input_size"][0]
    cfg["img_size"] = size if isinstance(size, int) else size[0]
    return model, meta.get("class_names"), cfg


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
    p.add_argument("--ema", action="store_true", help="the checkpoint's EMA weights (a run with model_ema)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("images", nargs="+")
    args = p.parse_args(argv)
    try:
        model, names, cfg = load(args.checkpoint, ema=args.ema)
        images = preprocess(args.images, cfg)
    except (FileNotFoundError, ValueError) as e:
        return report(e)
    probs = np.asarray(jax.nn.softmax(model(images), axis=-1))
    for path, row in zip(args.images, probs):
        print(path)
        for i in np.argsort(-row)[: args.top]:
            label = names[i] if names and i < len(names) else str(i)
            print(f"  {row[i]:7.2%}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
