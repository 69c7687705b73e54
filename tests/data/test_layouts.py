"""Official layouts (files:*) on tiny stand-ins written in each layout, split expressions, and a
real tfds dataset prepared here by tfds itself.

Every stand-in image is a flat colour that encodes its class (and, for Caltech, its number in
the class), so a test reads back through tf.data which file got which label.
"""

import importlib.util
import io
import os
import pickle
import struct

import ml_collections
import numpy as np
import pytest
import scipy.io

try:  # torch (under torchvision) must load before TensorFlow, or the process segfaults
    import torchvision.datasets as tv_datasets
except ImportError:  # the CIFAR / STL-10 comparisons with torchvision skip
    tv_datasets = None

from jaxvit.data import pipeline, splits
from jaxvit.data.sources import get_source, tfds_source
from jaxvit.data.tf_util import import_tf
from jaxvit.errors import ConfigError, DataError, DataNotFoundError

_JPEGS: dict[tuple[int, int], bytes] = {}


def _color(label: int, k: int = 0) -> tuple[int, int, int]:
    return 8 + 16 * (label % 16), 4 + 8 * (label // 16 % 32), 8 + 32 * (k % 8)


def _decoded(image: np.ndarray) -> tuple[int, int]:
    r, g, b = (int(round((float(image[..., c].mean()) - o) / s)) for c, o, s in ((0, 8, 16), (1, 4, 8), (2, 8, 32)))
    return r + 16 * g, b


def write_jpeg(path, label: int, k: int = 0) -> None:
    if (label, k) not in _JPEGS:
        tf = import_tf()
        _JPEGS[label, k] = tf.io.encode_jpeg(np.full((8, 8, 3), _color(label, k), np.uint8), quality=100).numpy()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(_JPEGS[label, k])


def config(dataset: str, data_dir, **layout) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(dict(dataset=dataset, data_dir=str(data_dir), seed=0))
    c.layout = ml_collections.ConfigDict(layout)
    return c


def read(src, split) -> list[tuple[int, int, int]]:
    """(label, label the pixels encode, image number the pixels encode) per example."""
    return [(int(e["label"]), *_decoded(e["image"])) for e in src.make(split, 0, 1).as_numpy_iterator()]


def assert_labels_match_files(rows):
    assert rows and all(label == coded for label, coded, _ in rows)


# --- stand-ins in each layout ------------------------------------------------------------
def make_flowers(root, n_per_split=102):
    """102 classes, one image per class in each of trnid / valid / tstid; image ids shuffled."""
    n = 3 * n_per_split
    ids = np.random.default_rng(0).permutation(n) + 1
    labels = np.zeros(n, np.uint8)
    labels[ids - 1] = [j % n_per_split % 102 + 1 for j in range(n)]  # 1-based, like imagelabels.mat
    for i in range(n):
        write_jpeg(root / "jpg" / f"image_{i + 1:05d}.jpg", labels[i] - 1)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": labels[None, :]})
    scipy.io.savemat(root / "setid.mat", {k: ids[j * n_per_split:(j + 1) * n_per_split][None, :].astype(np.uint16)
                                          for j, k in enumerate(("trnid", "valid", "tstid"))})
    return root


def make_pets(root):
    """37 breeds, one trainval and one test image each; names with an underscore in them."""
    (root / "annotations").mkdir(parents=True)
    for file, offset in (("trainval.txt", 100), ("test.txt", 200)):
        lines = []
        for c in range(37):
            stem = f"breed_{c:02d}_{offset + c}"
            write_jpeg(root / "images" / f"{stem}.jpg", c)
            lines.append(f"{stem} {c + 1} {1 + c % 2} {c % 12 + 1}")
        (root / "annotations" / file).write_text("\n".join(lines[::-1]) + "\n")
    return root


def make_caltech(root, per_class=3):
    base = root / "256_ObjectCategories"
    for c in range(257):
        name = "clutter" if c == 256 else f"thing-{c}"
        for k in range(per_class):
            write_jpeg(base / f"{c + 1:03d}.{name}" / f"{c + 1:03d}_{k + 1:04d}.jpg", c, k)
    (base / "056.thing-55" / "greg").mkdir()  # the real archive has a stray folder and a stray file
    (base / "198.thing-197" / "RENAME2").write_text("")
    return root


def make_aircraft(root, n_classes=100):
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = [f"Model {c}-{c % 7}00/B" for c in range(n_classes)]  # spaces and slashes, like 'F-16A/B'
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    (data / "families.txt").write_text("\n".join(f"Family {f}" for f in range(10)) + "\n")
    for j, split in enumerate(("train", "val", "test")):
        var, fam = [], []
        for c in range(n_classes):
            image = f"{1000000 + 1000 * j + c:07d}"
            write_jpeg(data / "images" / f"{image}.jpg", c)
            var.append(f"{image} {variants[c]}")
            fam.append(f"{image} Family {c % 10}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(var) + "\n")
        (data / f"images_family_{split}.txt").write_text("\n".join(fam) + "\n")
    return root


def _annotations(fnames, classes):
    dt = [(k, "O") for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    a = np.zeros((1, len(fnames)), dt)
    for i, (f, c) in enumerate(zip(fnames, classes)):
        a[0, i] = (np.array([[1]]), np.array([[1]]), np.array([[8]]), np.array([[8]]),
                   np.array([[c]], np.uint8), np.array([f]))
    return {"annotations": a}


def make_cars(root, n_classes=196):
    (root / "devkit").mkdir(parents=True)
    names = np.array([[f"Maker Model {c} 2012" for c in range(n_classes)]], dtype=object)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    for folder, annos in (("cars_train", root / "devkit" / "cars_train_annos.mat"),
                          ("cars_test", root / "cars_test_annos_withlabels.mat")):  # where the 2nd download lands
        fnames = [f"{i + 1:05d}.jpg" for i in range(n_classes)]
        classes = [(3 * i) % n_classes + 1 for i in range(n_classes)]  # a permutation: gcd(3, 196) = 1
        for f, c in zip(fnames, classes):
            write_jpeg(root / folder / f, c - 1)
        scipy.io.savemat(annos, _annotations(fnames, classes))
    return root


def make_dtd(root, n_classes=47):
    base = root / "dtd"
    classes = [f"texture{c:02d}" for c in range(n_classes)]
    (base / "labels").mkdir(parents=True)
    for j, split in enumerate(("train", "val", "test")):
        lines = []
        for c, name in enumerate(classes):
            rel = f"{name}/{name}_{j:04d}.jpg"
            write_jpeg(base / "images" / rel, c)
            lines.append(rel)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return root


# --- each layout -----------------------------------------------------------------------------
def test_flowers102_splits_labels_and_train_plus_val(tmp_path):
    src = get_source(config("files:flowers102", make_flowers(tmp_path)))
    assert src.num_classes == 102 and src.class_names[:3] == ["1", "2", "3"]
    assert src.num_examples == {"train": 102, "val": 102, "test": 102}
    assert src.size("train+val") == 204  # MoCo v3 trains on trnid + valid
    rows = read(src, "train+val")
    assert_labels_match_files(rows)
    assert sorted(r[0] for r in rows) == sorted(list(range(102)) * 2)
    assert_labels_match_files(read(src, "test"))


@pytest.mark.parametrize("layout,make,n,names", [
    ("pets", make_pets, 37, {0: "breed_00", 36: "breed_36"}),  # class ids from the list files
    ("cars", make_cars, 196, {5: "Maker Model 5 2012"}),  # the official annotation .mat files
])
def test_class_ids_and_names_from_the_official_files(tmp_path, layout, make, n, names):
    src = get_source(config(f"files:{layout}", make(tmp_path)))
    assert src.num_classes == n and {i: src.class_names[i] for i in names} == names
    assert src.num_examples == {"train": n, "test": n}
    rows = read(src, "test")
    assert_labels_match_files(rows)
    assert sorted(r[0] for r in rows) == list(range(n))


def test_caltech256_30_numbered_seeded_and_clutter(tmp_path):
    root = make_caltech(tmp_path)
    src = get_source(config("files:caltech256", root, train_per_class=1, val_per_class=1))
    assert src.num_classes == 257 and src.class_names[0] == "thing-0" and src.class_names[-1] == "clutter"
    assert src.num_examples == {"train": 257, "val": 257, "test": 257}
    train, val, test = (read(src, s) for s in ("train", "val", "test"))
    for rows, k in ((train, 0), (val, 1), (test, 2)):  # 'numbered': image 1 trains, 2 validates, 3 tests
        assert_labels_match_files(rows)
        assert {r[2] for r in rows} == {k}

    def seeded(seed):
        c = config("files:caltech256", root, train_per_class=1, val_per_class=1, pick="seeded")
        c.seed = seed
        return [r[2] for r in read(get_source(c), "train")]

    assert seeded(0) == seeded(0) != seeded(1)
    assert len(set(seeded(0))) == 3  # a shuffle, not the first image of each class

    no_clutter = get_source(config("files:caltech256", root, train_per_class=2, val_per_class=0, clutter=False))
    assert no_clutter.num_classes == 256 and "clutter" not in no_clutter.class_names
    assert no_clutter.num_examples == {"train": 512, "val": 0, "test": 256}

    with pytest.raises(DataError, match=r"001\.thing-0 has 3 images.*train_per_class"):
        get_source(config("files:caltech256", root, train_per_class=30, val_per_class=20))


def test_aircraft_variant_and_family_from_any_root_depth(tmp_path):
    root = make_aircraft(tmp_path)
    for where in (root, root / "fgvc-aircraft-2013b", root / "fgvc-aircraft-2013b" / "data"):
        src = get_source(config("files:aircraft", where))
        assert src.num_classes == 100 and src.class_names[3] == "Model 3-300/B"
        assert src.num_examples == {"train": 100, "val": 100, "test": 100}
    assert_labels_match_files(read(src, "train+val"))
    fam = get_source(config("files:aircraft", root, aircraft_level="family"))
    assert fam.num_classes == 10
    assert [r[0] for r in read(fam, "test")] == [c % 10 for c in range(100)]


def test_dtd_fold_and_root(tmp_path):
    root = make_dtd(tmp_path)
    for where in (root, root / "dtd"):
        src = get_source(config("files:dtd", where))
        assert src.num_classes == 47 and src.class_names[0] == "texture00"
        assert src.num_examples == {"train": 47, "val": 47, "test": 47}
    assert_labels_match_files(read(src, "train+val"))
    with pytest.raises(DataNotFoundError, match=r"labels/train2\.txt not found.*--config\.data_dir"):
        get_source(config("files:dtd", root, dtd_fold=2))


# --- bad input: one error naming the path and the fix ------------------------------------------
def test_missing_files_and_bad_ids_name_the_path(tmp_path):
    flowers = make_flowers(tmp_path / "flowers", n_per_split=40)
    (flowers / "setid.mat").rename(flowers / "setid.bak")
    with pytest.raises(DataNotFoundError, match=r"flowers/setid\.mat not found.*--config\.data_dir") as e:
        get_source(config("files:flowers102", flowers))
    assert "\n" not in str(e.value)
    (flowers / "setid.bak").rename(flowers / "setid.mat")
    os.remove(flowers / "jpg" / "image_00007.jpg")
    with pytest.raises(DataError,
                       match=r"setid\.mat \(\w+\) names 1 image\(s\) that are not there, e\.g\. .*image_00007"):
        get_source(config("files:flowers102", flowers))

    pets = make_pets(tmp_path / "pets")
    test_txt = pets / "annotations" / "test.txt"
    test_txt.write_text(test_txt.read_text() + "breed_99_1 38 1 1\n")
    with pytest.raises(DataError, match=r"test\.txt:38: class id 38 is outside 1\.\.37"):
        get_source(config("files:pets", pets))

    cars = make_cars(tmp_path / "cars", n_classes=3)
    os.remove(cars / "cars_test_annos_withlabels.mat")
    with pytest.raises(DataNotFoundError, match="cars_test_annos_withlabels.mat not found"):
        get_source(config("files:cars", cars))

    with pytest.raises(ConfigError, match="did you mean files:flowers102"):
        get_source(config("files:flowers", flowers))
    with pytest.raises(ConfigError, match="needs --config.data_dir"):
        get_source(config("files:dtd", ""))


def test_split_expressions_and_unknown_splits(tmp_path):
    src = get_source(config("files:dtd", make_dtd(tmp_path)))
    assert src.size("train[:10]") == 10 and src.size("train[-7:]") == 7
    assert src.size("test[10%:]") == 47 - 5  # round(4.7) = 5, tfds's 'closest' rounding
    assert [r[0] for r in read(src, "train[:3]+test[-2:]")] == [0, 1, 2, 45, 46]
    for bad, why in (("validation", r"it has \['test', 'train', 'val'\]"), ("train[:150%]", "reaches past"),
                     ("train[:5%]+val[3]", "is not NAME")):
        with pytest.raises(DataError, match=f"no split .*{why}.*--config.train_split"):
            src.check_split(bad)
    assert splits.resolve("x", "a[10%:]+b", {"a": 10, "b": 3}) == [("a", 1, 10), ("b", 0, 3)]


def test_batch_larger_than_train_split_stops_before_the_workdir(tmp_path):
    from conftest import ROOT

    from jaxvit.train import loop

    spec = importlib.util.spec_from_file_location("default_cfg", ROOT / "configs" / "default.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    c.update(dict(dataset="files:flowers102", data_dir=str(make_flowers(tmp_path / "flowers", n_per_split=20)),
                  train_split="train+val", global_batch_size=64, model_args="depth=1,embed_dim=32,num_heads=2"))
    workdir = tmp_path / "run"
    with pytest.raises(DataError,
                       match=r"'train\+val' of files:flowers102 has 40 examples.*global_batch_size to at most 40"):
        loop.run(c, str(workdir))
    assert not workdir.exists()
    c.train_split, c.global_batch_size = "train", 8
    os.remove(tmp_path / "flowers" / "imagelabels.mat")
    with pytest.raises(DataNotFoundError, match="imagelabels.mat not found"):
        loop.run(c, str(workdir))
    assert not workdir.exists()


# --- a real tfds dataset, prepared here by tfds (no network) -----------------------------------
@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    import_tf()
    import tensorflow_datasets as tfds

    class JaxvitLayoutsTiny(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3)),
                "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(10, 0), "test": self._generate_examples(4, 100)}

        def _generate_examples(self, n, start):
            for i in range(start, start + n):
                yield i, {"image": np.full((8, 8, 3), _color(i % 3), np.uint8), "label": i % 3}

    data_dir = tmp_path_factory.mktemp("tfds")
    JaxvitLayoutsTiny(data_dir=str(data_dir)).download_and_prepare()
    return "jaxvit_layouts_tiny", str(data_dir)


def test_tfds_split_expressions_on_a_prepared_dataset(tiny_tfds):
    src = tfds_source(*tiny_tfds)
    assert src.num_examples == {"train": 10, "test": 4} and src.class_names == ["a", "b", "c"]
    for expr in ("train", "train[:50%]", "train[50%:]", "train+test", "test[-1:]", "train[:33%]+test[25%:]"):
        assert src.size(expr) == splits.size("same grammar", expr, src.num_examples), expr
    assert src.size("train[:50%]") == 5 and src.size("train+test") == 14
    whole = read(src, "train+test")
    assert_labels_match_files(whole)
    halves = read(src, "train[:50%]") + read(src, "train[50%:]")
    assert sorted(halves) == sorted(read(src, "train")) and len(halves) == 10
    shards = [[int(e["label"]) for e in src.make("train+test", i, 3).as_numpy_iterator()] for i in range(3)]
    # tfds's even_splits shards each part of a '+' (train 4/3/3, test 2/1/1): eval must cover 6, not ceil(14/3)
    assert [len(s) for s in shards] == [src.local_examples("train+test", i, 3) for i in range(3)] == [6, 4, 4]
    assert sorted(sum(shards, [])) == sorted(r[0] for r in whole)
    assert pipeline.num_eval_batches(src, "train+test", 5, 3) == 2
    for bad in ("validation", "train[:150%]", "train[5]", "train+validation"):
        with pytest.raises(DataError, match=r"no split .*it has \['test', 'train'\]"):
            src.check_split(bad)


# --- the array layouts torchvision downloads: CIFAR-10, CIFAR-100, STL-10 -----------------------
class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str (SHORT_BINSTRING / BINSTRING), as the official CIFAR pickles
    (cPickle, protocol 2) hold their keys, names and the arrays' raw data."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def write_py2_pickle(path, obj: dict) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy >= 2 names numpy._core; the official files (numpy 1, Python 2) say numpy.core
    path.write_bytes(buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def _pixels(n: int, seed: int, side: int = 32) -> np.ndarray:
    """Random HWC images: a transposed or mirrored read cannot match them by chance."""
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def make_cifar10(root, n_train=20, n_test=10):
    """cifar-10-batches-py/ as unpacked; n_train images over data_batch_1..5. Returns HWC images."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = [f"class{c}".encode() for c in range(10)]
    write_py2_pickle(base / "batches.meta", {b"num_cases_per_batch": n_train // 5, b"label_names": names,
                                             b"num_vis": 3072})
    images = {"train": _pixels(n_train, 0), "test": _pixels(n_test, 1)}
    labels = {"train": [(3 * i + 1) % 10 for i in range(n_train)],
              "test": [(7 * i) % 10 for i in range(n_test)]}
    files = [("train", f"data_batch_{b + 1}", b, 5) for b in range(5)] + [("test", "test_batch", 0, 1)]
    for split, file, b, parts in files:
        n = len(labels[split]) // parts
        x = images[split][b * n:(b + 1) * n]
        write_py2_pickle(base / file, {
            b"batch_label": f"{split} batch {b + 1} of {parts}".encode(),
            b"labels": labels[split][b * n:(b + 1) * n],
            b"data": x.transpose(0, 3, 1, 2).reshape(n, 3072),  # rows are C x H x W
            b"filenames": [f"img_{split}_{b * n + i}.png".encode() for i in range(n)],
        })
    return images, labels


def make_cifar100(root, n_train=20, n_test=10):
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    write_py2_pickle(base / "meta", {b"fine_label_names": [f"fine{c}".encode() for c in range(100)],
                                     b"coarse_label_names": [f"coarse{c}".encode() for c in range(20)]})
    images = {"train": _pixels(n_train, 2), "test": _pixels(n_test, 3)}
    fine = {"train": [(37 * i + 99) % 100 for i in range(n_train)],
            "test": [(11 * i) % 100 for i in range(n_test)]}
    for split in ("train", "test"):
        n = len(fine[split])
        write_py2_pickle(base / split, {
            b"filenames": [f"{i}.png".encode() for i in range(n)], b"batch_label": f"{split} batch".encode(),
            b"fine_labels": fine[split], b"coarse_labels": [f % 20 for f in fine[split]],
            b"data": images[split].transpose(0, 3, 1, 2).reshape(n, 3072),
        })
    return images, fine


def make_stl10(root, n_train=20, n_test=10):
    """stl10_binary/ as unpacked: per image 3 channels, each written column by column (Matlab's
    order), labels 1..10 as uint8; an empty unlabeled_X.bin (torchvision checks it is there)."""
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    images = {"train": _pixels(n_train, 4, 96), "test": _pixels(n_test, 5, 96)}
    labels = {"train": [(3 * i) % 10 for i in range(n_train)], "test": [9 - i % 10 for i in range(n_test)]}
    for split in ("train", "test"):
        (base / f"{split}_X.bin").write_bytes(images[split].transpose(0, 3, 2, 1).tobytes())  # N, C, W, H
        (base / f"{split}_y.bin").write_bytes((np.array(labels[split], np.uint8) + 1).tobytes())
    (base / "unlabeled_X.bin").write_bytes(b"")
    (base / "class_names.txt").write_text("\n".join(f"stl{c}" for c in range(10)) + "\n")
    (base / "fold_indices.txt").write_text(
        "\n".join(" ".join(str((f + 3 * i) % n_train) for i in range(4)) for f in range(10)) + "\n")
    return images, labels


def torchvision_reader(name: str):
    """torchvision's own dataset class, its md5 checks of the real archive's files dropped."""
    if tv_datasets is None:
        pytest.skip("torchvision is not installed")
    cls = getattr(tv_datasets, name)
    attrs = {"train_list": [[f, None] for f, _ in cls.train_list],
             "test_list": [[f, None] for f, _ in cls.test_list]}
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    return type(name, (cls,), attrs)


def read_arrays(src, split):
    rows = list(src.make(split, 0, 1).as_numpy_iterator())
    return np.stack([e["image"] for e in rows]), [int(e["label"]) for e in rows]


def assert_same_as_torchvision(src, split, tv_dataset):
    images, labels = read_arrays(src, split)
    tv_images = np.stack([np.asarray(img) for img, _ in tv_dataset])
    assert images.dtype == np.uint8 and images.shape == tv_images.shape
    np.testing.assert_array_equal(images, tv_images)
    assert labels == [int(y) for _, y in tv_dataset]
    assert src.class_names == list(tv_dataset.classes)


def test_cifar10_pixel_identical_to_torchvision_from_either_root(tmp_path):
    images, labels = make_cifar10(tmp_path)
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):
        src = get_source(config("files:cifar10", where))
        assert src.num_classes == 10 and src.num_examples == {"train": 20, "test": 10}
    for split in ("train", "test"):
        got, got_labels = read_arrays(src, split)
        np.testing.assert_array_equal(got, images[split])
        assert got_labels == labels[split]
    cifar10 = torchvision_reader("CIFAR10")
    assert_same_as_torchvision(src, "train", cifar10(str(tmp_path), train=True, download=False))
    assert_same_as_torchvision(src, "test", cifar10(str(tmp_path), train=False, download=False))
    assert src.size("train[:50%]+test") == 20


def test_cifar100_fine_and_coarse_identical_to_torchvision(tmp_path):
    images, fine = make_cifar100(tmp_path)
    src = get_source(config("files:cifar100", tmp_path))
    assert src.num_classes == 100 and src.class_names[99] == "fine99"
    assert src.num_examples == {"train": 20, "test": 10}
    assert_same_as_torchvision(src, "train", torchvision_reader("CIFAR100")(str(tmp_path), download=False))
    assert read_arrays(src, "test")[1] == fine["test"]
    coarse = get_source(config("files:cifar100", tmp_path / "cifar-100-python", cifar100_labels="coarse"))
    assert coarse.num_classes == 20 and coarse.class_names[:2] == ["coarse0", "coarse1"]
    assert read_arrays(coarse, "train")[1] == [f % 20 for f in fine["train"]]
    with pytest.raises(ConfigError, match="cifar100_labels='medium'"):
        get_source(config("files:cifar100", tmp_path, cifar100_labels="medium"))


def test_stl10_orientation_labels_and_folds_identical_to_torchvision(tmp_path):
    images, labels = make_stl10(tmp_path)
    src = get_source(config("files:stl10", tmp_path))
    assert src.num_classes == 10 and src.class_names[3] == "stl3"
    assert src.num_examples == {"train": 20, "test": 10}
    got, got_labels = read_arrays(src, "test")
    np.testing.assert_array_equal(got, images["test"])  # not transposed: H before W
    assert got_labels == labels["test"]
    stl10 = torchvision_reader("STL10")
    assert_same_as_torchvision(src, "train", stl10(str(tmp_path), split="train", download=False))
    assert_same_as_torchvision(src, "test", stl10(str(tmp_path), split="test", download=False))
    fold = get_source(config("files:stl10", tmp_path / "stl10_binary", stl10_fold=2))
    assert fold.num_examples == {"train": 4, "test": 10}
    assert_same_as_torchvision(fold, "train", stl10(str(tmp_path), split="train", folds=2, download=False))


def test_array_layouts_bad_files_name_the_path(tmp_path):
    make_cifar10(tmp_path / "c10")
    base = tmp_path / "c10" / "cifar-10-batches-py"
    errors = []

    def expect(exc, pattern, dataset="files:cifar10", root=tmp_path / "c10", **layout):
        with pytest.raises(exc, match=pattern) as e:
            get_source(config(dataset, root, **layout))
        errors.append(str(e.value))

    (base / "data_batch_3").rename(base / "kept")
    expect(DataNotFoundError, r"batches-py/data_batch_3 not found.*CIFAR10\(ROOT.*--config\.data_dir")
    (base / "kept").rename(base / "data_batch_3")
    (tmp_path / "empty").mkdir()
    expect(DataNotFoundError, r"empty/cifar-10-batches-py/batches\.meta not found", root=tmp_path / "empty")

    whole = (base / "test_batch").read_bytes()
    (base / "test_batch").write_bytes(whole[: len(whole) // 2])
    expect(DataError, r"test_batch is not a readable pickle.*truncated or damaged: download it again")

    marker = tmp_path / "pwned"
    (base / "test_batch").write_bytes(pickle.dumps({"data": RunsCode(str(marker)), "labels": []}, protocol=2))
    expect(DataError, r"test_batch asks to load posix\.mkdir.*not unpickled \(it could run code\)")
    assert not marker.exists()

    write_py2_pickle(base / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]})
    expect(DataError, r"test_batch \(labels\): label 10 is outside 0\.\.9")
    write_py2_pickle(base / "test_batch", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [3, 1]})
    expect(DataError, r"test_batch: 'data' is uint8 \(2, 1024\).*not N x 3072")

    make_stl10(tmp_path / "stl")
    stl = tmp_path / "stl" / "stl10_binary"
    with open(stl / "test_X.bin", "ab") as f:
        f.write(b"\0" * 5)
    expect(DataError, r"test_X\.bin has 276485 bytes, not a multiple of one 96x96x3", "files:stl10", stl)
    (stl / "test_X.bin").write_bytes((stl / "test_X.bin").read_bytes()[:-5])
    (stl / "train_y.bin").write_bytes(bytes([0]) + (stl / "train_y.bin").read_bytes()[1:])
    expect(DataError, r"train_y\.bin: label 0 is outside 1\.\.10", "files:stl10", stl)
    assert all("\n" not in e and ("download" in e or "--config.data_dir" in e) for e in errors), errors


class RunsCode:
    """A pickle that calls os.mkdir when loaded: what the restricted unpickler must refuse."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)
