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

Three more are stored as arrays, as torchvision's CIFAR10 / CIFAR100 / STL10 download and unpack
them; they are read whole into memory (160-360 MB) and need no per-image decode. Root: the
unpacked folder or its parent (torchvision's root).

  files:cifar10     cifar-10-batches-py/: data_batch_1..5 (train, 50,000), test_batch (10,000),
                    batches.meta (label_names); pickled dicts, 'data' (N, 3072) uint8 = N x CHW.
  files:cifar100    cifar-100-python/: train (50,000), test (10,000), meta; 100 fine labels, or
                    the 20 superclasses with layout.cifar100_labels='coarse'.
  files:stl10       stl10_binary/: {train,test}_X.bin (N x 3 x 96 x 96 uint8, each channel stored
                    column by column), {train,test}_y.bin (1-based uint8), class_names.txt;
                    train 5,000, test 8,000. layout.stl10_fold=0..9 keeps the 1,000 train images
                    of that line of fold_indices.txt (-1: all). unlabeled_X.bin is not read.
Their pickles go through an unpickler that only builds numpy arrays (pickle.load on a file can
run code; jaxvit/data/safe_pickle.py).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable

import numpy as np

from jaxvit.data import image_check, safe_pickle
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
    "cifar10": "CIFAR-10 as torchvision.datasets.CIFAR10(ROOT, download=True) unpacks "
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (ROOT/cifar-10-batches-py/data_batch_1..5, "
    "test_batch, batches.meta)",
    "cifar100": "CIFAR-100 as torchvision.datasets.CIFAR100(ROOT, download=True) unpacks "
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (ROOT/cifar-100-python/train, test, meta)",
    "stl10": "STL-10 as torchvision.datasets.STL10(ROOT, download=True) unpacks "
    "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz (ROOT/stl10_binary/train_X.bin, "
    "train_y.bin, test_X.bin, test_y.bin, class_names.txt)",
}

DEFAULTS = dict(train_per_class=30, val_per_class=20, pick="numbered", clutter=True,
                aircraft_level="variant", dtd_fold=1, cifar100_labels="fine", stl10_fold=-1)


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


def _check_ids(layout: str, ids: np.ndarray, n: int, where: str, what: str = "class id",
               first: int = 1) -> None:
    """Ids must lie in first..first+n-1 (1-based by default)."""
    bad = ids[(ids < first) | (ids >= first + n)]
    if bad.size:
        raise DataError(
            f"{where}: {what} {int(bad[0])} is outside {first}..{first + n - 1} ({bad.size} such); "
            "the file is damaged or "
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


# --- layouts stored as arrays (torchvision's CIFAR10 / CIFAR100 / STL10 downloads) ----------
def _array_root(layout: str, root: str, folder: str, probe: str) -> str:
    """``root/folder`` if there, else ``root`` itself when it holds ``probe`` (either works)."""
    if os.path.isdir(os.path.join(root, folder)):
        return os.path.join(root, folder)
    if os.path.exists(os.path.join(root, probe)):
        return root
    raise _not_found(layout, os.path.join(root, folder, probe))


def _unpickle(layout: str, path: str, keys: tuple[str, ...]) -> dict:
    """The dict a CIFAR pickle holds (bytes keys read as str), checked to have ``keys``."""
    obj = safe_pickle.load_arrays(_need(layout, path), layout, EXPECTS[layout])
    if isinstance(obj, dict):
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        have = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{path} has no {missing} (it has {have}); it is not the file 'files:{layout}' "
                        f"expects: {EXPECTS[layout]}")
    return obj


def _names(values) -> list[str]:
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def _cifar_batches(layout: str, folder: str, files: list[str], label_key: str, n_classes: int):
    """Images (N, 32, 32, 3) uint8 and 0-based labels of the batch files, in their order."""
    images, labels = [], []
    for file in files:
        path = os.path.join(folder, file)
        batch = _unpickle(layout, path, ("data", label_key))
        data, ids = np.asarray(batch["data"]), np.asarray(batch[label_key], np.int64).reshape(-1)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(ids) != len(data):
            raise DataError(f"{path}: 'data' is {data.dtype} {data.shape} with {len(ids)} labels, not "
                            f"N x 3072 uint8 with N labels; download it again ({EXPECTS[layout]})")
        _check_ids(layout, ids, n_classes, f"{path} ({label_key})", "label", first=0)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # rows are C x H x W
        labels.append(ids)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels).astype(np.int32)


def cifar10(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    folder = _array_root("cifar10", root, "cifar-10-batches-py", "batches.meta")
    meta = _unpickle("cifar10", os.path.join(folder, "batches.meta"), ("label_names",))
    names = _names(meta["label_names"])
    train = [f"data_batch_{i}" for i in range(1, 6)]
    splits = {split: _cifar_batches("cifar10", folder, files, "labels", len(names))
              for split, files in (("train", train), ("test", ["test_batch"]))}
    return splits, names


def cifar100(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    level = opts["cifar100_labels"]
    if level not in ("fine", "coarse"):
        raise ConfigError(f"config.layout.cifar100_labels={level!r}: 'fine' (100 classes) or 'coarse' (20)")
    folder = _array_root("cifar100", root, "cifar-100-python", "meta")
    key = f"{level}_label_names"
    names = _names(_unpickle("cifar100", os.path.join(folder, "meta"), (key,))[key])
    splits = {split: _cifar_batches("cifar100", folder, [split], f"{level}_labels", len(names))
              for split in ("train", "test")}
    return splits, names


STL10_SIDE = 96


def _stl10_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    x_path, y_path = (_need("stl10", os.path.join(folder, f"{split}_{k}.bin")) for k in ("X", "y"))
    size = 3 * STL10_SIDE * STL10_SIDE
    raw = np.fromfile(x_path, np.uint8)
    if raw.size == 0 or raw.size % size:
        raise DataError(f"{x_path} has {raw.size} bytes, not a multiple of one {STL10_SIDE}x{STL10_SIDE}x3 "
                        f"image ({size}); it is truncated: download it again ({EXPECTS['stl10']})")
    # each channel is stored column by column: (N, C, W, H) -> (N, H, W, C)
    images = np.ascontiguousarray(raw.reshape(-1, 3, STL10_SIDE, STL10_SIDE).transpose(0, 3, 2, 1))
    ids = np.fromfile(y_path, np.uint8).astype(np.int64)
    if len(ids) != len(images):
        raise DataError(f"{y_path} has {len(ids)} labels for the {len(images)} images of {x_path}; one of "
                        f"them is truncated: download both again ({EXPECTS['stl10']})")
    _check_ids("stl10", ids, 10, y_path, "label")
    return images, (ids - 1).astype(np.int32)


def stl10(root: str, opts: dict, seed: int) -> tuple[Splits, list[str]]:
    folder = _array_root("stl10", root, "stl10_binary", "train_X.bin")
    splits = {split: _stl10_split(folder, split) for split in ("train", "test")}
    fold = int(opts["stl10_fold"])
    if fold >= 0:
        if fold > 9:
            raise ConfigError(f"config.layout.stl10_fold={fold} is not one of STL-10's folds 0..9 (-1: all)")
        lines = [line for _, line in _read_lines("stl10", os.path.join(folder, "fold_indices.txt"))]
        if len(lines) != 10:
            raise DataError(f"{os.path.join(folder, 'fold_indices.txt')} has {len(lines)} folds, not 10; "
                            f"download it again ({EXPECTS['stl10']})")
        index = np.array(lines[fold].split(), np.int64)
        _check_ids("stl10", index, len(splits["train"][1]), os.path.join(folder, "fold_indices.txt"),
                   "image index", first=0)
        splits["train"] = (splits["train"][0][index], splits["train"][1][index])
    names_path = os.path.join(folder, "class_names.txt")
    names = [line for _, line in _read_lines("stl10", names_path)] if os.path.exists(names_path) else []
    if len(names) != 10:
        names = [str(i) for i in range(1, 11)]  # torchvision also reads on without the names file
    return splits, names


LAYOUTS: dict[str, Callable[[str, dict, int], tuple[Splits, list[str]]]] = {
    "flowers102": flowers102,
    "pets": pets,
    "caltech256": caltech256,
    "aircraft": aircraft,
    "cars": cars,
    "dtd": dtd,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "stl10": stl10,
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

    if all(items.dtype == np.uint8 for items, _ in splits.values()):  # decoded already (CIFAR, STL-10)
        return _in_memory(f"files:{name}", splits, class_names, lambda image: image)

    splits = _checked(root, splits, bool(config.get("skip_bad_images", False)))
    tf = import_tf()  # here, not in decode: decode is traced by tf.data

    def decode(path):
        return image_check.decode(tf, tf.io.read_file(path))

    return _in_memory(f"files:{name}", splits, class_names, decode)
