"""Official dataset downloads read as they unpack: ``config.dataset='files:NAME'``, root ``config.data_dir``.

The seeds' transfer sets (shared/seeds/002 and 003) come as archives with their own list
files and .mat annotations, not as class folders. Each layout below lists
(path, label) per split from those files, checks that every listed image is there and every
class id is in range (one DataError naming the file and the fix, before the workdir is
touched), and leaves decoding to tf.data (``tf.io.decode_image`` on ``tf.io.read_file``).
Splits take tfds's split expressions ('train+val', 'train[:90%]'; jaxvit/data/splits.py).

  files:flowers102  Oxford Flowers-102: jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat.
                    train = trnid (1,020), val = valid (1,020), test = tstid (6,149); MoCo v3
                    (seed 002) trains on train+val. Class names are the labels 1..102.
  files:pets        Oxford-IIIT Pets: images/*.jpg, annotations/trainval.txt, test.txt
                    ('Abyssinian_100 1 1 1': the 2nd column is the 1-based class id).
                    train = trainval.txt (3,680), test = test.txt (3,669); 37 breeds.
  files:caltech256  Caltech-256: 256_ObjectCategories/NNN.name/NNN_XXXX.jpg. Per class
                    layout.train_per_class images are 'train', the next layout.val_per_class
                    'val', the rest 'test'; by image number (layout.pick='numbered', seed 003's
                    loader: 1-30 train, 31-50 val) or a per-class shuffle by config.seed
                    ('seeded'). 257.clutter is a class unless layout.clutter=False.
  files:aircraft    FGVC-Aircraft 2013b: data/images/*.jpg, data/images_<level>_{train,val,
                    test}.txt ('1025794 707-320'), data/variants.txt (families.txt,
                    manufacturers.txt); level = layout.aircraft_level. Root: the archive's
                    parent, fgvc-aircraft-2013b/ or its data/.
  files:cars        Stanford Cars: cars_train/, cars_test/, devkit/cars_meta.mat,
                    devkit/cars_train_annos.mat, and cars_test_annos_withlabels.mat (a separate
                    download) in the root, devkit/ or cars_test/. train 8,144, test 8,041.
  files:dtd         Describable Textures: dtd/images/<class>/*.jpg, dtd/labels/{train,val,test}N.txt
                    with N = layout.dtd_fold (1..10); root is dtd/ or its parent.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Callable

import numpy as np

from jaxvit.data import image_check
from jaxvit.data.sources import Source, _in_memory, report_bad_images
from jaxvit.data.tf_util import import_tf
from jaxvit.errors import ConfigError, DataError, DataNotFoundError

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

# What each layout expects under its root, and where it comes from (for error messages).
EXPECTS = {
    "flowers102": "Oxford Flowers-102 as unpacked from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ "
    "(ROOT/jpg/image_00001.jpg..., ROOT/imagelabels.mat, ROOT/setid.mat)",
    "pets": "Oxford-IIIT Pets as unpacked from https://www.robots.ox.ac.uk/~vgg/data/pets/ "
    "(ROOT/images/*.jpg, ROOT/annotations/trainval.txt and test.txt)",
    "caltech256": "Caltech-256 as unpacked from https://data.caltech.edu/records/nyy15-4j048 "
    "(ROOT/256_ObjectCategories/001.ak47/001_0001.jpg ...)",
    "aircraft": "FGVC-Aircraft as unpacked from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ "
    "(ROOT/fgvc-aircraft-2013b/data/images/*.jpg, images_variant_train.txt, variants.txt, ...)",
    "cars": "Stanford Cars as distributed (ROOT/cars_train/, ROOT/cars_test/, ROOT/devkit/cars_meta.mat, "
    "ROOT/devkit/cars_train_annos.mat, and cars_test_annos_withlabels.mat in ROOT or ROOT/devkit)",
    "dtd": "DTD as unpacked from https://www.robots.ox.ac.uk/~vgg/data/dtd/ "
    "(ROOT/dtd/images/<class>/*.jpg, ROOT/dtd/labels/train1.txt, val1.txt, test1.txt)",
}

DEFAULTS = dict(train_per_class=30, val_per_class=20, pick="numbered", clutter=True,
                aircraft_level="variant", dtd_fold=1)


# --- checks shared by the layouts -------------------------------------------------------
def _not_found(layout: str, path: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{path} not found; dataset 'files:{layout}' reads {EXPECTS[layout]}; put it there or set "
        "--config.data_dir to the folder that holds it"
    )


def _first_existing(layout: str, candidates: list[str]) -> str:
    """The first of ``candidates`` that exists (a layout's root may be given at several depths)."""
    for path in candidates:
        if os.path.exists(path):
            return path
    raise _not_found(layout, candidates[0])


def _need(layout: str, path: str) -> str:
    if not os.path.exists(path):
        raise _not_found(layout, path)
    return path


def _read_lines(layout: str, path: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of a list file, blank lines and '#' comments skipped."""
    with open(_need(layout, path)) as f:
        return [(i, s) for i, line in enumerate(f, 1) if (s := line.strip()) and not s.startswith("#")]


def _loadmat(layout: str, path: str, keys: tuple[str, ...]) -> dict:
    import scipy.io

    _need(layout, path)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True)
    except Exception as e:  # scipy raises ValueError, TypeError or MatReadError on a damaged file
        raise DataError(f"{path} is not a readable .mat file ({e}); download it again") from e
    missing = [k for k in keys if k not in mat]
    if missing:
        raise DataError(
            f"{path} has no {missing} (it has {sorted(k for k in mat if not k.startswith('__'))}); "
            f"it is not the file 'files:{layout}' expects: {EXPECTS[layout]}"
        )
    return {k: np.atleast_1d(mat[k]) for k in keys}


def _check_ids(layout: str, ids: np.ndarray, n: int, where: str, what: str = "class id") -> None:
    """1-based ids must lie in 1..n."""
    bad = ids[(ids < 1) | (ids > n)]
    if bad.size:
        raise DataError(
            f"{where}: {what} {int(bad[0])} is outside 1..{n} ({bad.size} such); the file is damaged or "
            f"from another release: download it again ({EXPECTS[layout]})"
        )


def _check_present(layout: str, paths: list[str], listed_in: str) -> None:
    """Every listed image exists (one directory listing per folder, not a stat per file)."""
    listings: dict[str, set[str]] = {}
    missing = []
    for p in paths:
        folder, name = os.path.split(p)
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if name not in listings[folder]:
            missing.append(p)
    if missing:
        raise DataError(
            f"{listed_in} names {len(missing)} image(s) that are not there, e.g. {missing[0]}; "
            f"unpack the full archive into the same root ({EXPECTS[layout]}) or set --config.data_dir to it"
        )


def _split(paths: list[str], labels) -> tuple[np.ndarray, np.ndarray]:
    return np.array(paths, dtype=object).astype(str), np.asarray(labels, np.int32)


# --- the layouts ---------------------------------------------------------------------------
def flowers102(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    labels = _loadmat("flowers102", os.path.join(root, "imagelabels.mat"), ("labels",))["labels"]
    setid_path = os.path.join(root, "setid.mat")
    setid = _loadmat("flowers102", setid_path, ("trnid", "valid", "tstid"))
    _check_ids("flowers102", labels.astype(np.int64), 102, os.path.join(root, "imagelabels.mat"))
    splits = {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        ids = setid[key].astype(np.int64)
        _check_ids("flowers102", ids, len(labels), f"{setid_path} ({key})", "image id")
        paths = [os.path.join(root, "jpg", f"image_{i:05d}.jpg") for i in ids]
        _check_present("flowers102", paths, f"{setid_path} ({key})")
        splits[split] = _split(paths, labels[ids - 1] - 1)
    return splits, [str(i) for i in range(1, 103)]


def pets(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    root = _first_existing("pets", [os.path.join(root, "annotations"),
                                    os.path.join(root, "oxford-iiit-pet", "annotations")])
    root = os.path.dirname(root)
    names: dict[int, str] = {}
    splits = {}
    for split, file in (("train", "trainval.txt"), ("test", "test.txt")):
        listed = os.path.join(root, "annotations", file)
        paths, ids = [], []
        for lineno, line in _read_lines("pets", listed):
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise DataError(f"{listed}:{lineno} is {line!r}, not 'IMAGE CLASS_ID ...'; download it again")
            cid = int(fields[1])
            _check_ids("pets", np.array([cid]), 37, f"{listed}:{lineno}")
            names.setdefault(cid, fields[0].rsplit("_", 1)[0])
            paths.append(os.path.join(root, "images", fields[0] + ".jpg"))
            ids.append(cid - 1)
        _check_present("pets", paths, listed)
        splits[split] = _split(paths, ids)
    return splits, [names.get(i, str(i)) for i in range(1, 38)]


def caltech256(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    base = _first_existing("caltech256", [os.path.join(root, "256_ObjectCategories"), root])
    folders = sorted(d for d in os.listdir(base)
                     if re.match(r"^\d{3}\.", d) and os.path.isdir(os.path.join(base, d)))
    if not folders:
        raise _not_found("caltech256", os.path.join(base, "001.ak47"))
    if not opts["clutter"]:
        folders = [d for d in folders if not d.endswith(".clutter")]
    n_train, n_val = int(opts["train_per_class"]), int(opts["val_per_class"])
    if opts["pick"] not in ("numbered", "seeded"):
        raise ConfigError(f"config.layout.pick={opts['pick']!r} is not 'numbered' or 'seeded'")
    parts: dict[str, tuple[list, list]] = {s: ([], []) for s in ("train", "val", "test")}
    for label, folder in enumerate(folders):
        d = os.path.join(base, folder)
        images = sorted(f for f in os.listdir(d) if f.lower().endswith(".jpg"))
        if len(images) < n_train + n_val:
            raise DataError(
                f"{d} has {len(images)} images, fewer than layout.train_per_class + layout.val_per_class = "
                f"{n_train + n_val}; lower --config.layout.train_per_class / val_per_class, "
                "or unpack the full archive"
            )
        if opts["pick"] == "seeded":  # keyed by the folder number: dropping clutter changes no other class
            order = np.random.default_rng([seed, int(folder[:3])]).permutation(len(images))
            images = [images[i] for i in order]
        for split, chosen in (("train", images[:n_train]), ("val", images[n_train:n_train + n_val]),
                              ("test", images[n_train + n_val:])):
            parts[split][0].extend(os.path.join(d, f) for f in chosen)
            parts[split][1].extend([label] * len(chosen))
    return {s: _split(*v) for s, v in parts.items()}, [f.split(".", 1)[1] for f in folders]


AIRCRAFT_LEVELS = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}


def aircraft(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    level = opts["aircraft_level"]
    if level not in AIRCRAFT_LEVELS:
        raise ConfigError(f"config.layout.aircraft_level={level!r} is not one of {sorted(AIRCRAFT_LEVELS)}")
    data = os.path.dirname(_first_existing("aircraft", [
        os.path.join(r, AIRCRAFT_LEVELS[level])
        for r in (os.path.join(root, "fgvc-aircraft-2013b", "data"), os.path.join(root, "data"), root)
    ]))
    class_file = os.path.join(data, AIRCRAFT_LEVELS[level])
    names = [line for _, line in _read_lines("aircraft", class_file)]
    index = {n: i for i, n in enumerate(names)}
    splits = {}
    for split in ("train", "val", "test"):
        listed = os.path.join(data, f"images_{level}_{split}.txt")
        paths, labels = [], []
        for lineno, line in _read_lines("aircraft", listed):
            image, _, name = line.partition(" ")
            if name not in index:
                raise DataError(
                    f"{listed}:{lineno} names {level} {name!r}, which {class_file} does not list; "
                    f"the two files come from different releases: unpack fgvc-aircraft-2013b again"
                )
            paths.append(os.path.join(data, "images", image + ".jpg"))
            labels.append(index[name])
        _check_present("aircraft", paths, listed)
        splits[split] = _split(paths, labels)
    return splits, names


def cars(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    devkit = os.path.join(root, "devkit")
    meta = _loadmat("cars", os.path.join(devkit, "cars_meta.mat"), ("class_names",))
    names = [str(n) for n in meta["class_names"]]
    test_annos = _first_existing("cars", [os.path.join(d, "cars_test_annos_withlabels.mat")
                                          for d in (devkit, root, os.path.join(root, "cars_test"))])
    splits = {}
    for split, annos, folder in (("train", os.path.join(devkit, "cars_train_annos.mat"), "cars_train"),
                                 ("test", test_annos, "cars_test")):
        a = np.atleast_1d(_loadmat("cars", annos, ("annotations",))["annotations"])
        if a.dtype.names is None or not {"fname", "class"} <= set(a.dtype.names):
            raise DataError(f"{annos} has no 'fname' and 'class' per annotation; for the test split use "
                            "cars_test_annos_withlabels.mat (cars_test_annos.mat has no labels)")
        ids = np.array([int(c) for c in a["class"]], np.int64)
        _check_ids("cars", ids, len(names), annos)
        paths = [os.path.join(root, folder, str(f)) for f in a["fname"]]
        _check_present("cars", paths, annos)
        splits[split] = _split(paths, ids - 1)
    return splits, names


def dtd(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    fold = int(opts["dtd_fold"])
    if not 1 <= fold <= 10:
        raise ConfigError(f"config.layout.dtd_fold={fold} is not one of DTD's folds 1..10")
    labels_dir = _first_existing("dtd", [os.path.join(root, "dtd", "labels"), os.path.join(root, "labels")])
    base = os.path.dirname(labels_dir)
    images = _need("dtd", os.path.join(base, "images"))
    classes = sorted(d for d in os.listdir(images) if os.path.isdir(os.path.join(images, d)))
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in ("train", "val", "test"):
        listed = os.path.join(base, "labels", f"{split}{fold}.txt")
        paths, labels = [], []
        for lineno, line in _read_lines("dtd", listed):
            cls = line.split("/", 1)[0]
            if cls not in index:
                raise DataError(f"{listed}:{lineno} names class {cls!r}, which has no folder in {images}; "
                                "unpack the full dtd archive")
            paths.append(os.path.join(images, line))
            labels.append(index[cls])
        _check_present("dtd", paths, listed)
        splits[split] = _split(paths, labels)
    return splits, classes


LAYOUTS: dict[str, Callable[[str, dict, int], tuple[Splits, list[str]]]] = {
    "flowers102": flowers102,
    "pets": pets,
    "caltech256": caltech256,
    "aircraft": aircraft,
    "cars": cars,
    "dtd": dtd,
}


def _checked(root: str, splits: Splits, skip: bool) -> Splits:
    """Every listed image checked before the first step, as for image folders (image_check.py):
    undecodable ones stop the run, named, or with ``skip_bad_images`` are left out."""
    listed = list(dict.fromkeys(str(f) for files, _ in splits.values() for f in files))
    bad = image_check.find_bad_images(listed)
    if not bad:
        return splits
    report_bad_images(root, bad, len(listed), skip)
    keep = {s: np.array([str(f) not in bad for f in files], bool) for s, (files, _) in splits.items()}
    return {s: (files[keep[s]], labels[keep[s]]) for s, (files, labels) in splits.items()}


def layout_source(name: str, config) -> Source:
    """The official layout ``name`` under ``config.data_dir`` (options in ``config.layout``)."""
    if name not in LAYOUTS:
        close = difflib.get_close_matches(name, list(LAYOUTS), n=3)
        hint = f"; did you mean {', '.join('files:' + c for c in close)}?" if close else ""
        raise ConfigError(f"unknown layout 'files:{name}': one of {['files:' + k for k in LAYOUTS]}{hint}")
    if not config.data_dir:
        raise ConfigError(f"dataset 'files:{name}' needs --config.data_dir=ROOT: {EXPECTS[name]}")
    root = os.path.abspath(os.path.expanduser(config.data_dir))
    if not os.path.isdir(root):
        raise _not_found(name, root)
    opts = {**DEFAULTS, **dict(config.get("layout", {}))}
    splits, class_names = LAYOUTS[name](root, opts, int(config.seed))

    splits = _checked(root, splits, bool(config.get("skip_bad_images", False)))
    tf = import_tf()  # here, not in decode: decode is traced by tf.data

    def decode(path):
        return image_check.decode(tf, tf.io.read_file(path))

    return _in_memory(f"files:{name}", splits, class_names, decode)
