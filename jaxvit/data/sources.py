"""Where examples come from: scikit-learn's digits, an image folder, tfds, or synthetic tensors.

A source yields unbatched ``{'image': uint8 HxWx3, 'label': int32}`` for one
process's shard of a split; ``num_examples`` is the split's *global* size so
every host derives the same step and eval-batch counts.
"""

from __future__ import annotations

import collections
import difflib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxvit.data import splits as split_expr
from jaxvit.data.image_check import decode, find_bad_images
from jaxvit.data.tf_util import graph_fn, import_tf
from jaxvit.errors import ConfigError, DataError, DataNotFoundError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
BUILTIN = ("digits", "imagefolder", "synthetic")

log = logging.getLogger("jaxvit")


@dataclass
class Source:
    name: str
    num_classes: int
    class_names: list[str]
    num_examples: dict[str, int]
    # (split, process_index, process_count) -> tf.data.Dataset of encoded-or-raw examples
    make: Callable[[str, int, int], Any] = field(repr=False)
    # local shard size of a split
    local_examples: Callable[[str, int, int], int] = field(repr=False)
    # in-memory sources: per split, (items, labels) as listed (file paths or images)
    arrays: dict[str, tuple[Any, np.ndarray]] | None = field(default=None, repr=False)

    def size(self, split: str) -> int:
        """Global example count of a split or split expression ('train[:90%]', 'train+val')."""
        return self.local_examples(split, 0, 1)

    def check_split(self, split: str) -> None:
        """Raises DataError, naming the splits there are, if ``split`` cannot be read."""
        self.size(split)


def _shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """Contiguous near-equal shard [lo, hi) of n items for process ``index`` of ``count``."""
    return n * index // count, n * (index + 1) // count


def _in_memory(name: str, splits: dict[str, tuple[Any, np.ndarray]], class_names, decode) -> Source:
    """A source over per-split (items, labels) arrays; ``decode`` maps an item to an image."""

    sizes = {s: len(v[1]) for s, v in splits.items()}

    def select(split):
        """The items and labels of a split expression, concatenated in its order."""
        ranges = split_expr.resolve(name, split, sizes)
        parts = [(splits[s][0][lo:hi], splits[s][1][lo:hi]) for s, lo, hi in ranges]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def make(split, index, count):
        tf = import_tf()
        items, labels = select(split)
        lo, hi = _shard_bounds(len(labels), index, count)
        ds = tf.data.Dataset.from_tensor_slices({"item": items[lo:hi], "label": labels[lo:hi]})
        return ds.map(graph_fn(lambda e: {"image": decode(e["item"]), "label": tf.cast(e["label"], tf.int32)}))

    def local(split, index, count):
        lo, hi = _shard_bounds(split_expr.size(name, split, sizes), index, count)
        return hi - lo

    return Source(name, len(class_names), list(class_names), sizes, make, local, arrays=splits)


DIGITS_SPLIT = os.path.join(os.path.dirname(__file__), "digits_split.txt")


def digits_source() -> Source:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), fixed stratified split.

    The split is scikit-learn's ``train_test_split(test_size=0.2, random_state=0,
    stratify=labels)``, its 1,437 train then 360 test indices stored in ``digits_split.txt``
    (tests/data/test_data.py checks them against scikit-learn's): reading the bundled CSV
    directly spares each trainer process importing scikit-learn (0.7-1.4 s of CPU measured here).
    """
    images, labels = _digits_arrays()
    images = np.round(images / 16.0 * 255.0).astype(np.uint8)
    images = np.repeat(images[..., None], 3, axis=-1)  # grey to RGB, like the other sources
    with open(DIGITS_SPLIT) as f:
        order = np.array([int(v) for line in f if not line.startswith("#") for v in line.split()])
    train, test = order[:1437], order[1437:]
    splits = {"train": (images[train], labels[train]), "test": (images[test], labels[test])}
    return _in_memory("digits", splits, [str(i) for i in range(10)], lambda x: x)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images 1797x8x8 float in [0, 16], labels int32): scikit-learn's ``load_digits()``, read
    without importing scikit-learn from the file it reads (``sklearn/datasets/data/digits.csv.gz``,
    a row of 64 pixels then the label); through ``load_digits()`` where that file is not found."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    roots = (spec.submodule_search_locations or []) if spec else []
    path = next((f for r in roots if os.path.isfile(f := os.path.join(r, "datasets", "data", "digits.csv.gz"))), None)
    if path is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images, d.target.astype(np.int32)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int32)


def _images_in(folder: str, ignored: collections.Counter) -> list[str]:
    """A class folder's images, or those of its images/ sub-folder (Tiny-ImageNet's train/).

    Entries that are not images by extension (and sub-folders) are counted in ``ignored``.
    """
    if os.path.isdir(os.path.join(folder, "images")):
        folder = os.path.join(folder, "images")
    files = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        ext = os.path.splitext(entry.name)[1].lower()
        if entry.is_dir():
            ignored["folder"] += 1
        elif ext in IMAGE_EXTENSIONS:
            files.append(entry.path)  # broken links too: the image check reports them
        else:
            ignored[ext or "no extension"] += 1
    return files


def _list_class_dir(root: str, ignored: collections.Counter) -> tuple[list[str], list[int], list[str]]:
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataNotFoundError(f"{root} has no class sub-folders (expected {root}/<class>/<image>)")
    files, labels = [], []
    for i, c in enumerate(classes):
        found = _images_in(os.path.join(root, c), ignored)
        files += found
        labels += [i] * len(found)
    return files, labels, classes


def _annotated_val(val_dir: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """Tiny-ImageNet's official val/: images/ plus val_annotations.txt ('file<TAB>wnid<TAB>box')."""
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    with open(os.path.join(val_dir, "val_annotations.txt")) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            if parts[1] not in index:
                raise DataError(f"{val_dir}/val_annotations.txt names class {parts[1]!r}, absent from train/")
            files.append(os.path.join(val_dir, "images", parts[0]))
            labels.append(index[parts[1]])
    return files, labels


def _readable_names(root: str, classes: list[str]) -> list[str]:
    """Tiny-ImageNet's words.txt ('wnid<TAB>name, name'): the first name per class, if present."""
    path = os.path.join(root, "words.txt")
    if not os.path.exists(path):
        return classes
    words = dict(line.rstrip("\n").split("\t", 1) for line in open(path) if "\t" in line)
    return [words[c].split(",")[0].strip() if c in words else c for c in classes]


def imagefolder_source(
    root: str, val_fraction: float = 0.1, seed: int = 0, skip_bad_images: bool = False
) -> Source:
    """``root/train/<class>/*`` and optional ``root/val/<class>/*``.

    Tiny-ImageNet's official layout works as downloaded: ``train/<wnid>/images/*`` and
    ``val/images/*`` labelled by ``val/val_annotations.txt`` (class names from words.txt).
    Without val/, a deterministic ``val_fraction`` of each class is held out as 'val'.
    Files that are not images by extension are ignored (counted in the log). Every image
    is checked before training (jaxvit/data/image_check.py): undecodable ones stop here
    with a DataError naming them, or with ``skip_bad_images`` are left out, as if absent.
    """
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise DataNotFoundError(
            f"image folder {root!r} has no train/ sub-folder: expected {root}/train/<class>/<image> "
            "(and optionally val/); set --config.data_dir to that root"
        )
    ignored = collections.Counter()
    files, labels, classes = _list_class_dir(train_dir, ignored)
    val_dir = os.path.join(root, "val")
    val = None
    if os.path.exists(os.path.join(val_dir, "val_annotations.txt")):
        val = _annotated_val(val_dir, classes)
    elif os.path.isdir(val_dir):
        v_files, v_labels, v_classes = _list_class_dir(val_dir, ignored)
        if v_classes != classes:
            raise DataError(
                f"val/ classes differ from train/ classes in {root}; give val/ the same class folders as train/"
            )
        val = v_files, v_labels
    if ignored:
        total = sum(ignored.values())
        kinds = ", ".join(f"{kind}: {count}" for kind, count in ignored.most_common())
        log.info("image folder %s: ignored %d non-image %s (by extension: %s)",
                 root, total, "entry" if total == 1 else "entries", kinds)

    bad = find_bad_images(files + (val[0] if val else []))
    if bad:
        report_bad_images(root, bad, len(files) + (len(val[0]) if val else 0), skip_bad_images)
        files, labels = _without(bad, files, labels)
        if val is not None:
            val = _without(bad, *val)

    files, labels = np.array(files), np.array(labels, np.int32)
    if val is not None:
        splits = {"train": (files, labels), "val": (np.array(val[0]), np.array(val[1], np.int32))}
    else:
        rng = np.random.default_rng(seed)
        is_val = np.zeros(len(files), bool)
        for c in range(len(classes)):
            idx = np.flatnonzero(labels == c)
            is_val[rng.permutation(idx)[: max(1, int(round(len(idx) * val_fraction)))]] = True
        splits = {"train": (files[~is_val], labels[~is_val]), "val": (files[is_val], labels[is_val])}

    tf = import_tf()  # here, not in decode: tf.data traces decode, and AutoGraph would trace import_tf

    def decode_file(path):
        return decode(tf, tf.io.read_file(path))

    return _in_memory(f"imagefolder:{root}", splits, _readable_names(root, classes), decode_file)


def _without(bad: dict[str, str], files: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
    keep = [i for i, f in enumerate(files) if f not in bad]
    return [files[i] for i in keep], [labels[i] for i in keep]


def report_bad_images(root: str, bad: dict[str, str], total: int, skip: bool, shown: int = 5) -> None:
    """Stops with the count, the first few files and the fix; or, when skipping, logs them."""
    first = ", ".join(f"{path} ({why})" for path, why in list(bad.items())[:shown])
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    if skip:
        log.warning("%s: skipped %d of %d image files that cannot be decoded "
                    "(skip_bad_images=True): %s%s", root, len(bad), total, first, more)
        return
    raise DataError(
        f"{len(bad)} of {total} image files under {root} cannot be decoded; first: {first}{more}; "
        "delete or replace them, or pass --config.skip_bad_images=True to train and evaluate without them"
    )


def tfds_source(name: str, data_dir: str | None) -> Source:
    """Any prepared tfds dataset with 'image' and 'label' features; never downloads.

    A split is any tfds split expression ('train', 'train[:90%]', 'train+validation'):
    its size comes from tfds's split info and each process reads its
    ``tfds.even_splits`` part.
    """
    import_tf()
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises DatasetNotFoundError subclasses of several kinds
        from jaxvit.data.layouts import LAYOUTS

        known = tfds.list_builders() + list(BUILTIN) + [f"files:{k}" for k in LAYOUTS]
        close = difflib.get_close_matches(name, known, n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown dataset {name!r}: not one of {BUILTIN}, an official layout "
            f"('files:NAME', NAME in {sorted(LAYOUTS)}) nor a tfds dataset{hint}"
        ) from e
    where = data_dir or "~/tensorflow_datasets"
    if not builder.is_prepared():
        raise DataNotFoundError(
            f"tfds dataset {name!r} is not prepared under {where}. jaxvit never downloads at train "
            f"time: on a machine with internet run `tfds build {name} --data_dir {where}` "
            f"(or python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
            f"data_dir='{where}').download_and_prepare()\") and copy that folder here, then pass "
            f"--config.data_dir={where}"
        )
    info = builder.info
    label = info.features["label"]
    counts = {s: info.splits[s].num_examples for s in info.splits}

    def part(split, index, count):
        sub = tfds.even_splits(split, n=count, drop_remainder=False)[index]
        try:
            return sub, info.splits[sub].num_examples
        except (ValueError, KeyError, AssertionError) as e:  # unknown name, bad slice, bad syntax
            raise split_expr.unknown_split(name, split, counts, str(e).splitlines()[0]) from e

    def make(split, index, count):
        tf = import_tf()
        ds = builder.as_dataset(split=part(split, index, count)[0], shuffle_files=False)
        return ds.map(graph_fn(lambda e: {"image": e["image"], "label": tf.cast(e["label"], tf.int32)}))

    def local(split, index, count):
        return part(split, index, count)[1]

    return Source(name, label.num_classes, list(label.names), counts, make, local)


def get_source(config) -> Source:
    """The source ``config.dataset`` names: 'digits', 'imagefolder', 'files:NAME' (an official
    layout under ``config.data_dir``, jaxvit/data/layouts.py) or a tfds name ('tfds:' optional)."""
    name = config.dataset
    if name == "digits":
        return digits_source()
    if name == "imagefolder":
        if not config.data_dir:
            raise ConfigError("dataset 'imagefolder' needs --config.data_dir=ROOT (with ROOT/train/<class>/...)")
        return imagefolder_source(
            os.path.expanduser(config.data_dir), config.val_fraction, config.seed,
            skip_bad_images=config.get("skip_bad_images", False),
        )
    if name == "synthetic":
        raise ConfigError("the synthetic dataset has no tf.data source; use jaxvit.data.pipeline")
    if name.startswith("files:"):
        from jaxvit.data.layouts import layout_source

        return layout_source(name.removeprefix("files:"), config)
    return tfds_source(name.removeprefix("tfds:"), config.data_dir or None)
