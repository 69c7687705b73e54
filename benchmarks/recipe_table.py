"""Every config variant of the README's recipe table, started and trained, on stand-ins.

For each ``configs/x.py:variant`` whose data are files (the official layouts, Tiny-ImageNet's
image folder): a stand-in written in that layout with the real class count, the family's tiny
model (the sizes of tests/configs/test_configs.py; Inception-v4 as it is, at 75 px), 2 train steps of
8 images and the final eval, in this process (Caltech-256's stand-in has 3 images a class, so
its 30/20 split per class becomes 2/1). A variant that starts from ``init_from`` gets a
tiny checkpoint of its model with 1000 classes at that path first, so the classifier
re-initialization and loading run as in the recipe. Prints one row per variant, then a
count; exit status 1 if any variant failed.

tfds variants (``*_tfds``) are listed but not run: they need the prepared dataset, which this
machine has not got; the tfds source is tested on a dataset tfds prepares itself
(tests/data/test_layouts.py) and the recipe is the same as its files variant's.

    python benchmarks/recipe_table.py [--only moco_v3_vit_b_transfer:pets ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def tiny_imagenet(root: Path, n_classes: int = 200, per_class: int = 2, n_val: int = 10) -> None:
    """Tiny-ImageNet as unpacked: train/<wnid>/images/*.JPEG, val/images + val_annotations.txt."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    wnids = [f"n{10000000 + i:08d}" for i in range(n_classes)]
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", format="JPEG")
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n_val):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            root / "val" / "images" / f"val_{k}.JPEG", format="JPEG")
        lines.append(f"val_{k}.JPEG\t{wnids[k % n_classes]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def writers() -> dict:
    """dataset -> (writer(root), what the stand-in is)."""
    import test_layouts as lay

    return {
        "files:cifar10": (lambda r: lay.make_cifar10(r, n_train=20, n_test=10), "CIFAR-10 python pickles"),
        "files:cifar100": (lambda r: lay.make_cifar100(r, n_train=20, n_test=10), "CIFAR-100 python pickles"),
        "files:stl10": (lambda r: lay.make_stl10(r, n_train=20, n_test=10), "STL-10 binaries"),
        "files:flowers102": (lay.make_flowers, "jpg/ + imagelabels.mat + setid.mat"),
        "files:pets": (lay.make_pets, "images/ + annotations/{trainval,test}.txt"),
        "files:caltech256": (lambda r: lay.make_caltech(r, per_class=3), "256_ObjectCategories/"),
        "files:aircraft": (lay.make_aircraft, "fgvc-aircraft-2013b/data/"),
        "files:cars": (lay.make_cars, "cars_train/ cars_test/ devkit/ + cars_test_annos_withlabels.mat"),
        "files:dtd": (lay.make_dtd, "dtd/images/ + labels/"),
        "imagefolder": (tiny_imagenet, "tiny-imagenet-200 as unpacked"),
    }


def pretrained_checkpoint(config, path: Path) -> None:
    """A checkpoint of ``config.model`` at the run's tiny size with 1000 classes, as
    ``python -m convert`` writes one."""
    import convert
    import jaxvit
    from jaxvit.registry import parse_model_args

    name = config.model
    kwargs = dict(parse_model_args(config.model_args), num_classes=1000)
    if jaxvit.registry.get_entry(name).family not in ("perceiver", "inception"):
        kwargs["img_size"] = config.img_size
    if config.patch_size:
        kwargs["patch_size"] = config.patch_size
    model = jaxvit.create_model(name, **kwargs)
    convert.save(str(path), model, {"model": name.split(".")[0], "kwargs": kwargs})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="config:variant (or config) to run")
    ap.add_argument("--keep", default=None, help="write stand-ins and workdirs here (default: a temp dir)")
    args = ap.parse_args(argv)

    import glob

    from test_configs import load, tiny_run, variants

    from jaxvit.train import loop

    base = Path(args.keep or tempfile.mkdtemp(prefix="recipe_table_"))
    data = writers()
    written: dict[str, Path] = {}
    rows, failed = [], 0
    for path in sorted(glob.glob(str(ROOT / "configs" / "*.py"))):
        stem = Path(path).stem
        if stem in ("default", "__init__") or stem.startswith("_"):
            continue
        for variant in variants(stem):
            spec = stem if variant is None else f"{stem}:{variant}"
            if args.only and spec not in args.only and stem not in args.only:
                continue
            config = load(stem, variant)
            if config.dataset not in data:
                rows.append((spec, config.dataset, "-", "not run: a tfds dataset (see the docstring)", ""))
                continue
            if config.dataset not in written:
                root = base / "data" / config.dataset.replace(":", "_")
                root.mkdir(parents=True, exist_ok=True)
                data[config.dataset][0](root)
                written[config.dataset] = root
            config = tiny_run(config, stand_in=False, batch=8)
            if config.dataset == "files:caltech256":  # "Caltech 256-30" wants 30 + 20 images per class
                config.layout.train_per_class, config.layout.val_per_class = 2, 1
            config.data_dir = str(written[config.dataset])
            workdir = base / "runs" / spec.replace(":", "_")
            start = time.time()
            try:
                if config.init_from:
                    ckpt = base / "init" / spec.replace(":", "_")
                    pretrained_checkpoint(config, ckpt)
                    config.init_from = str(ckpt)
                result = loop.run(config, str(workdir))
                status = f"ok: {int(result['eval_count'])} eval images, top-1 {result['eval_top1']:.4f}"
                if "eval_ema_top1" in result:
                    status += " (EMA too)"
            except BaseException as e:  # noqa: BLE001  (a row per variant; KeyboardInterrupt still stops)
                if isinstance(e, KeyboardInterrupt):
                    raise
                failed += 1
                status = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                traceback.print_exc()
            rows.append((spec, config.dataset, "init_from" if config.init_from else "scratch", status,
                         f"{time.time() - start:.0f}"))
            print(" | ".join(rows[-1]), flush=True)

    print("\n| config:variant | data (stand-in) | start | result | s |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    ran = sum(1 for r in rows if r[4])
    print(f"\n{ran - failed} of {ran} variants trained and evaluated; {len(rows) - ran} tfds variants not run")
    if args.keep is None:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
