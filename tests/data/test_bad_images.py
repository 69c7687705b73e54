"""Bad files in an image folder: found before the first step, named, skippable; a clean log.

Images are generated here (tf.io.encode_png / encode_jpeg, PIL for GIF and BMP); the
broken ones are good files cut short, the usual damage of an interrupted copy.
"""

import importlib.util
import io
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, TINY, read_metrics, run_main

from jaxvit.data.image_check import find_bad_images
from jaxvit.data.sources import imagefolder_source
from jaxvit.data.tf_util import import_tf
from jaxvit.errors import DataError


def encode(fmt: str, image: np.ndarray) -> bytes:
    tf = import_tf()

    if fmt == "png":
        return tf.io.encode_png(image).numpy()
    if fmt == "jpg":
        return tf.io.encode_jpeg(image).numpy()
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format={"gif": "GIF", "bmp": "BMP"}[fmt])
    return out.getvalue()


def image_folder(root, classes=3, per_class=16, size=20, seed=0):
    """root/train/class<c>/<k>.{png,jpg}: good images, PNG and JPEG alternating."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for k in range(per_class):
            image = np.clip(rng.normal(60 + 60 * c, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            fmt = "png" if k % 2 == 0 else "jpg"
            (folder / f"{k:02d}.{fmt}").write_bytes(encode(fmt, image))
    return root


def cut(path, keep):
    path.write_bytes(path.read_bytes()[:keep])
    return path


def with_two_bad(root):
    """The folder with one PNG cut to 100 bytes and one JPEG cut in half."""
    png = cut(root / "train" / "class1" / "04.png", 100)
    jpg = root / "train" / "class2" / "07.jpg"
    cut(jpg, len(jpg.read_bytes()) // 2)
    return png, jpg


def default_config(**overrides):
    spec = importlib.util.spec_from_file_location("default_cfg", ROOT / "configs/default.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    for flag in TINY:  # conftest's tiny run, in process
        key, value = flag.removeprefix("--config.").split("=", 1)
        c[key] = type(c[key])(value) if not isinstance(c[key], bool) else value == "True"
    c.update(overrides)
    return c


@pytest.mark.parametrize("fmt", ["png", "jpg", "gif", "bmp"])
def test_check_reports_exactly_what_tensorflow_cannot_decode(fmt, tmp_path):
    """Whole files, files cut anywhere, and files with bytes after their end: the check's
    verdict equals TensorFlow's decode (the decoder tf.data uses) on each."""
    tf = import_tf()

    if fmt in ("gif", "bmp"):
        pytest.importorskip("PIL")
    data = encode(fmt, np.random.default_rng(1).integers(0, 255, (24, 30, 3), dtype=np.uint8))
    variants = {"whole": data, "junk_after_end": data + b"\0" * 64 + b"x" * 3000, "empty": b""}
    for keep in (len(data) - 1, len(data) - 2, len(data) - 20, len(data) // 2, 100, 20, 3):
        variants[f"cut{keep}"] = data[:keep]
    paths = {}
    for name, content in variants.items():
        paths[name] = tmp_path / f"{name}.{fmt}"
        paths[name].write_bytes(content)

    def decodes(path):
        try:
            tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
            return True
        except tf.errors.InvalidArgumentError:
            return False

    bad = find_bad_images(str(p) for p in paths.values())
    assert str(paths["whole"]) not in bad
    assert bad[str(paths["empty"])] == "empty file"
    assert str(paths["cut100"]) in bad
    assert {n for n, p in paths.items() if str(p) in bad} == {n for n, p in paths.items() if not decodes(p)}


def test_unreadable_and_misnamed_files_are_bad(tmp_path):
    text = tmp_path / "page.png"
    text.write_text("<html>404 not found</html>")
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    png_named_jpg = tmp_path / "fine.jpg"  # decode_image reads the bytes, not the name
    png_named_jpg.write_bytes(encode("png", np.zeros((4, 4, 3), np.uint8)))
    bad = find_bad_images([str(text), str(link), str(png_named_jpg)])
    assert bad == {
        str(text): "not a PNG, JPEG, GIF or BMP file: starts with b'<html>40'",
        str(link): "unreadable: No such file or directory",
    }


def test_bad_images_stop_the_run_naming_files_and_fix(tmp_path):
    root = image_folder(tmp_path / "data")
    png, jpg = with_two_bad(root)
    workdir = tmp_path / "run"
    proc = run_main(workdir, "--config.dataset=imagefolder", f"--config.data_dir={root}",
                    "--config.eval_split=val", "--config.total_steps=2", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert f"2 of 48 image files under {root} cannot be decoded" in errors[0]
    assert f"{png} (PNG cut short: no IEND end chunk, 100 bytes)" in errors[0]
    assert str(jpg) in errors[0] and "--config.skip_bad_images=True" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not workdir.exists()


def test_error_lists_the_first_five_and_counts_the_rest(tmp_path):
    root = image_folder(tmp_path, classes=2, per_class=8)
    for k in range(7):
        cut(root / "train" / "class0" / f"{k:02d}.{'png' if k % 2 == 0 else 'jpg'}", 50)
    with pytest.raises(DataError) as e:
        imagefolder_source(str(root))
    message = str(e.value)
    assert "\n" not in message and message.startswith("7 of 16 image files")
    assert message.count(str(root / "train" / "class0")) == 5 and "and 2 more" in message


def test_skip_bad_images_trains_on_the_good_ones(tmp_path, caplog):
    from jaxvit.train import loop

    root = image_folder(tmp_path / "data")
    with_two_bad(root)
    with caplog.at_level(logging.WARNING, logger="jaxvit"):
        source = imagefolder_source(str(root), 0.1, seed=0, skip_bad_images=True)
    assert "skipped 2 of 48 image files that cannot be decoded" in caplog.text
    assert source.num_examples["train"] + source.num_examples["val"] == 46
    # every example left decodes: a full pass over both splits (a bad one would raise here)
    for split in ("train", "val"):
        assert sum(1 for _ in source.make(split, 0, 1).as_numpy_iterator()) == source.num_examples[split]

    config = default_config(dataset="imagefolder", data_dir=str(root), eval_split="val", total_steps=3,
                            skip_bad_images=True, ckpt_every=0)
    result = loop.run(config, str(tmp_path / "run"))
    losses = [m["train_loss"] for m in read_metrics(tmp_path / "run") if "train_loss" in m]
    assert len(losses) == 3 and np.all(np.isfinite(losses))
    assert result["eval_count"] == source.num_examples["val"]


def test_non_image_files_are_counted_and_ignored(tmp_path, caplog):
    root = image_folder(tmp_path, classes=2, per_class=6)
    (root / "train" / "class0" / "notes.txt").write_text("not an image")
    (root / "train" / "class0" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "train" / "class1" / "labels.csv").write_text("a,b\n")
    (root / "train" / "class1" / "extra").mkdir()
    with caplog.at_level(logging.INFO, logger="jaxvit"):
        source = imagefolder_source(str(root))
    assert source.num_examples["train"] + source.num_examples["val"] == 12
    assert "ignored 4 non-image entries (by extension: " in caplog.text
    assert ".txt: 1" in caplog.text and "folder: 1" in caplog.text


def test_tiny_imagenet_val_goes_through_the_check(tmp_path):
    """The annotated val/ (val_annotations.txt): a cut file and a listed-but-missing file."""
    rng = np.random.default_rng(0)
    wnids = ["n01443537", "n01629819"]
    for wnid in wnids:
        folder = tmp_path / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for k in range(3):
            image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            (folder / f"{wnid}_{k}.JPEG").write_bytes(encode("jpg", image))
    (tmp_path / "val" / "images").mkdir(parents=True)
    lines = []
    for k in range(4):
        (tmp_path / "val" / "images" / f"val_{k}.JPEG").write_bytes(
            encode("jpg", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)))
        lines.append(f"val_{k}.JPEG\t{wnids[k % 2]}\t0\t0\t15\t15")
    lines.append(f"val_9.JPEG\t{wnids[0]}\t0\t0\t15\t15")  # listed, never written
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    cut(tmp_path / "val" / "images" / "val_2.JPEG", 120)

    with pytest.raises(DataError, match="2 of 11 image files") as e:
        imagefolder_source(str(tmp_path))
    assert "val_2.JPEG (JPEG" in str(e.value) and "val_9.JPEG (unreadable: No such file" in str(e.value)
    source = imagefolder_source(str(tmp_path), skip_bad_images=True)
    assert source.num_examples == {"train": 6, "val": 3}
    labels = [int(x["label"]) for x in source.make("val", 0, 1).as_numpy_iterator()]
    assert labels == [0, 1, 1]  # val_0, val_1, val_3


def test_training_log_holds_no_environment_nor_autograph_warning(tmp_path):
    """A real image-folder run (bad files skipped, a text file ignored): its output must not
    carry the process environment (import_tf traced by AutoGraph once printed it whole)."""
    root = image_folder(tmp_path / "data")
    with_two_bad(root)
    (root / "train" / "class0" / "README.txt").write_text("ignored")
    workdir = tmp_path / "run"
    proc = run_main(workdir, "--config.dataset=imagefolder", f"--config.data_dir={root}",
                    "--config.eval_split=val", "--config.total_steps=3", "--config.skip_bad_images=True",
                    "--config.aug.auto_augment=rand-m9-mstd0.5-inc1", "--config.aug.reprob=0.25")
    log = proc.stdout + proc.stderr
    assert "final eval" in proc.stdout
    assert "skipped 2 of 48 image files" in log and "ignored 1 non-image entry (by extension: .txt: 1)" in log
    printed_environment = "environ(" in log  # a bool: a failure must not print the environment either
    assert not printed_environment
    autograph_lines = [line[:200] for line in log.splitlines()
                       if "AutoGraph" in line or "could not transform" in line]
    assert not autograph_lines


def test_check_benchmark_runs_and_cleans_up():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_image_check.py"), "--files", "60",
                           "--threads", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT, check=True)
    assert "check, cold, 2 threads" in proc.stdout and ", 0 bad" in proc.stdout
    folder = proc.stdout.split(" under ")[1].splitlines()[0]
    assert not os.path.exists(folder)


def test_official_layouts_check_their_images_too(tmp_path):
    """files:* layouts go through the same check: a Pets image cut short is named, or skipped."""
    from test_layouts import config, make_pets

    from jaxvit.data.layouts import layout_source
    from jaxvit.errors import DataError

    root = make_pets(tmp_path / "pets")
    cut = root / "images" / "breed_03_103.jpg"
    cut.write_bytes(cut.read_bytes()[:120])
    with pytest.raises(DataError, match="1 of 74 image files .*breed_03_103.jpg.*skip_bad_images"):
        layout_source("pets", config("files:pets", root))
    c = config("files:pets", root)
    c.skip_bad_images = True
    src = layout_source("pets", c)
    assert src.num_examples == {"train": 36, "test": 37}
