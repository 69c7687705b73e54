"""Input pipeline: sources, determinism and resumability, eval padding, transforms."""

import ml_collections
import numpy as np
import pytest

from jaxvit.data import pipeline
from jaxvit.data.sources import digits_source, imagefolder_source


def config(**overrides):
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("default_cfg", ROOT / "configs/default.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    c.update(overrides)
    return c


def test_digits_split_is_fixed_and_stratified():
    a, b = digits_source(), digits_source()
    assert a.num_examples == b.num_examples == {"train": 1437, "test": 360}
    assert a.num_classes == 10


def test_digits_are_scikit_learns_in_its_stratified_split():
    """The stored split and the CSV read without scikit-learn are scikit-learn's load_digits()
    through train_test_split(test_size=0.2, random_state=0, stratify=labels), order included."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = np.repeat(np.round(d.images / 16.0 * 255.0).astype(np.uint8)[..., None], 3, axis=-1)
    x_tr, x_te, y_tr, y_te = train_test_split(images, d.target, test_size=0.2, random_state=0, stratify=d.target)
    src = digits_source()
    for split, (x, y) in {"train": (x_tr, y_tr), "test": (x_te, y_te)}.items():
        np.testing.assert_array_equal(src.arrays[split][0], x)
        np.testing.assert_array_equal(src.arrays[split][1], y)
        assert src.arrays[split][1].dtype == np.int32
    assert np.bincount(y_te).min() >= 35  # stratified: every class ~20% in test


def test_digits_through_load_digits_where_the_csv_is_not_found(monkeypatch):
    import importlib.util

    from jaxvit.data import sources

    direct = sources._digits_arrays()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    fallback = sources._digits_arrays()
    for a, b in zip(direct, fallback):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_train_stream_resumes_at_any_step():
    c = config(global_batch_size=32)
    src = digits_source()
    fresh = pipeline.train_batches(c, src, 32, 0, 0, 1)
    batches = [next(fresh) for _ in range(50)]  # crosses an epoch boundary (1437 / 32 = 44.9)
    for start in (3, 44, 47):
        resumed = next(pipeline.train_batches(c, src, 32, start, 0, 1))
        np.testing.assert_array_equal(resumed["image"], batches[start]["image"])
        np.testing.assert_array_equal(resumed["label"], batches[start]["label"])
    assert not np.array_equal(batches[0]["label"], batches[1]["label"])
    # another seed, another order
    other = next(pipeline.train_batches(config(global_batch_size=32, seed=1), src, 32, 0, 0, 1))
    assert not np.array_equal(other["label"], batches[0]["label"])


def test_global_batch_is_the_same_for_any_process_count():
    c = config()
    src = digits_source()
    one = [next(pipeline.train_batches(c, src, 32, 5, 0, 1))]
    parts = [next(pipeline.train_batches(c, src, 32, 5, i, 4)) for i in range(4)]
    assert all(p["label"].shape == (8,) for p in parts)
    whole = np.concatenate([p["image"] for p in parts])
    # the same examples, with the same augmentation, in another order within the batch
    key = lambda a: np.lexsort(a.reshape(len(a), -1).T[:64])
    np.testing.assert_array_equal(whole[key(whole)], one[0]["image"][key(one[0]["image"])])


def test_process_shards_are_disjoint_and_cover_the_split():
    src = digits_source()
    c = config()
    seen = []
    for index in range(3):
        n = 0
        for b in pipeline.eval_batches(c, src, "test", 16, index, 3):
            n += int(b["mask"].sum())
            seen += list(b["label"][b["mask"] > 0])
        assert n == src.local_examples("test", index, 3)
    assert len(seen) == 360
    np.testing.assert_array_equal(np.bincount(seen), np.bincount(src_labels(src, "test")))


def src_labels(src, split):
    return [int(x["label"]) for x in src.make(split, 0, 1).as_numpy_iterator()]


def test_eval_pads_with_masked_examples_and_same_batch_count_everywhere():
    src = digits_source()
    c = config()
    counts = {pipeline.num_eval_batches(src, "test", 64, pc) for pc in (1,)}
    assert counts == {6}  # ceil(360 / 64)
    batches = list(pipeline.eval_batches(c, src, "test", 64, 0, 1))
    assert len(batches) == 6
    assert batches[-1]["mask"].sum() == 360 - 5 * 64
    assert (batches[-1]["image"][batches[-1]["mask"] == 0] == 0).all()


def test_streams_run_without_autotuning_at_a_fixed_parallelism():
    """tf.data's autotuning is off: with it on, dropping a train iterator that had lived ~80 s
    waited up to 60 s for autotune's sleeping thread (`make train` sat 35-60 s after its last
    step, TF 2.21). The maps run --config.data_threads wide, else one per core."""
    import os

    src = digits_source()
    for c in (config(), config(data_threads=3)):
        for ds in (pipeline.train_dataset(c, src, 32, 0, 0, 1), pipeline.eval_dataset(c, src, "test", 16, 0, 1)):
            assert ds.options().autotune.enabled is False
            assert ds.options().threading.private_threadpool_size == c.data_threads
    assert pipeline.map_threads(config(data_threads=3)) == 3
    assert pipeline.map_threads(config()) == len(os.sched_getaffinity(0))


def test_normalization_and_size():
    c = config(img_size=24)
    b = next(pipeline.eval_batches(c, digits_source(), "test", 8, 0, 1))
    assert b["image"].shape == (8, 24, 24, 3) and b["image"].dtype == np.float32
    # digits' background is 0 -> (0 - 0.5) / 0.5 = -1 in the corner
    assert b["image"][:, 0, 0].min() == pytest.approx(-1.0, abs=1e-5)
    assert b["image"].max() <= 1.0 + 1e-5


IMAGENET_NORM = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # per-channel, unlike the default


def test_uint8_batches_normalized_on_device_equal_the_float32_pipeline():
    """transfer_dtype='uint8': the same crops and flips, stopped before normalization and rounded to uint8;
    normalize_on_device then gives the float32 pipeline's images to within that rounding."""
    from jaxvit.train.step import normalize_on_device

    src = digits_source()
    f32 = config(**IMAGENET_NORM)
    u8 = config(transfer_dtype="uint8", **IMAGENET_NORM)
    for c in (f32, u8):
        c.aug.hflip = 0.5
    std = np.array(IMAGENET_NORM["std"])
    for batches in (lambda c: pipeline.train_batches(c, src, 64, 3, 0, 1),
                    lambda c: pipeline.eval_batches(c, src, "test", 64, 0, 1)):
        f, u = next(batches(f32)), next(batches(u8))
        assert u["image"].dtype == np.uint8 and u["image"].shape == f["image"].shape
        np.testing.assert_array_equal(u["label"], f["label"])
        x = np.asarray(normalize_on_device(u["image"], IMAGENET_NORM["mean"], IMAGENET_NORM["std"]))
        assert x.dtype == np.float32
        # Rounding moves a pixel by at most 0.5 of 255, i.e. 0.5 / 255 / std_c once normalized (the float32
        # pipeline's resized values are not integers, the uint8 one's are). Measured (2-core CPU): the max
        # |diff| per channel reaches that bound, at most 1.6e-7 over it (float32 rounding of values up to
        # ~2.6, a few ulp); the +1e-6 is 6x that. Per channel, so a mean/std channel mix-up fails.
        diff = np.abs(x - f["image"]).max(axis=(0, 1, 2))
        assert (diff <= 0.5 / 255 / std + 1e-6).all(), (diff, 0.5 / 255 / std)
        assert diff.min() > 0  # the float32 pipeline's values are not already integers: rounding was tested
    # float images were normalized on the host: the same array back
    assert normalize_on_device(f["image"], IMAGENET_NORM["mean"], IMAGENET_NORM["std"]) is f["image"]


def test_uint8_batches_are_a_quarter_of_the_bytes():
    src = digits_source()
    f = next(pipeline.train_batches(config(), src, 32, 0, 0, 1))
    u = next(pipeline.train_batches(config(transfer_dtype="uint8"), src, 32, 0, 0, 1))
    assert f["image"].dtype == np.float32 and u["image"].dtype == np.uint8
    assert f["image"].nbytes == 4 * u["image"].nbytes
    e = list(pipeline.eval_batches(config(transfer_dtype="uint8"), src, "test", 64, 0, 1))
    assert all(b["image"].dtype == np.uint8 for b in e)  # the masked padding too
    s = next(pipeline.synthetic_batches(config(transfer_dtype="uint8"), 4, 10))
    assert s["image"].dtype == np.uint8 and s["image"].shape == (4, 16, 16, 3)


def test_imagefolder_holdout_is_deterministic(cifar_subset):
    a = imagefolder_source(str(cifar_subset), 0.1, seed=0)
    b = imagefolder_source(str(cifar_subset), 0.1, seed=0)
    assert a.num_classes == 10 and a.class_names[0] == "airplane"
    assert a.num_examples == b.num_examples
    assert a.num_examples["train"] + a.num_examples["val"] == sum(
        1 for p in (cifar_subset / "train").rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg")
    )
    c = config(img_size=32, dataset="imagefolder", data_dir=str(cifar_subset), eval_split="val")
    x = next(pipeline.eval_batches(c, a, "val", 4, 0, 1))
    y = next(pipeline.eval_batches(c, b, "val", 4, 0, 1))
    np.testing.assert_array_equal(x["image"], y["image"])


def test_imagefolder_without_train_dir_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/<class>"):
        imagefolder_source(str(tmp_path))


def test_random_resized_crop_respects_scale():
    import tensorflow as tf

    from jaxvit.data.transforms import random_resized_crop

    image = tf.zeros([100, 80, 3])
    for i in range(20):
        seed = tf.constant([i, 7], tf.int64)
        # intercept the crop size by resizing to the crop itself
        out = random_resized_crop(tf, image, seed, (10, 10), (0.3, 0.5), (3 / 4, 4 / 3), "bilinear")
        assert out.shape == (10, 10, 3)


def test_synthetic_batches_need_no_tensorflow():
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import sys, ml_collections; from jaxvit.data import pipeline;"
        "c = ml_collections.ConfigDict(dict(img_size=8));"
        "b = next(pipeline.synthetic_batches(c, 4, 10));"
        "assert b['image'].shape == (4, 8, 8, 3);"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


del ml_collections


def test_tiny_imagenet_official_layout(tmp_path):
    """train/<wnid>/images/*.JPEG, val/images/* + val_annotations.txt, words.txt: as downloaded."""
    import tensorflow as tf

    from jaxvit.data.sources import imagefolder_source

    rng = np.random.default_rng(0)
    wnids = ["n01443537", "n01629819", "n01641577"]

    def write(path, value):
        path.parent.mkdir(parents=True, exist_ok=True)
        img = np.full((64, 64, 3), value, np.uint8) + rng.integers(0, 3, (64, 64, 3), dtype=np.uint8)
        path.write_bytes(tf.io.encode_jpeg(img).numpy())

    for c, wnid in enumerate(wnids):
        for k in range(4):
            write(tmp_path / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", 80 * c)
        (tmp_path / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
    lines = []
    for k, c in enumerate([2, 0, 1, 2, 0]):
        write(tmp_path / "val" / "images" / f"val_{k}.JPEG", 80 * c)
        lines.append(f"val_{k}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n")
    src = imagefolder_source(str(tmp_path))
    assert src.num_examples == {"train": 12, "val": 5}
    assert src.class_names == ["goldfish", "European fire salamander", "n01641577"]
    val = list(src.make("val", 0, 1).as_numpy_iterator())
    assert [int(e["label"]) for e in val] == [2, 0, 1, 2, 0]
    # the label is the image's annotated class (images were written with value 80 * class)
    assert all(abs(float(e["image"].mean()) - 80 * int(e["label"]) - 1) < 3 for e in val)
