"""jaxvit.weights, the one path for weights: the resampling kernel against torch, the classifier
found through get_classifier() in every family, re-init and strict=False, one-line mismatch
errors that write nothing, and EMA / best weights out of a run (predict, export, init_from)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

try:  # before anything loads TensorFlow: torch imported after it can crash the process
    import timm  # noqa: F401  (the export tests need it)
    import torch
except ImportError:
    timm = torch = None

from conftest import filled_model, main_in_process, read_metrics, tiny_models, trainer_weights

import jaxvit
from jaxvit import weights
from jaxvit.data.tf_util import import_tf
from jaxvit.errors import CheckpointError

VIT = "vit_tiny_patch16_224"
VIT_ARGS = dict(depth=2, embed_dim=32, num_heads=2, img_size=16, patch_size=4)

# The classifier each tiny model's get_classifier() names (tests/conftest.py's tiny_models()).
CLASSIFIERS = {
    "vit_tiny_patch16_224": ["head"],
    "deit_tiny_distilled_patch16_224": ["head", "head_dist"],
    "mixer_s16_224": ["head"],
    "swin_tiny_patch4_window7_224": ["head.fc"],
    "tnt_s_patch16_224": ["head"],
    "mvitv2_tiny": ["head.fc"],
    "perceiver_tiny": ["to_logits.2"],
    "perceiver_io_tiny": ["to_logits"],
    "dems_tiny_patch2_32": ["head"],
    "mvit2_tiny_patch2": ["head"],
}


def save(directory: Path, name: str, **kwargs) -> nnx.Module:
    """A model checkpoint of a freshly initialized ``name`` (what convert writes)."""
    model = jaxvit.create_model(name, seed=1, **kwargs)
    weights.save_model_checkpoint(
        str(directory), weights.collections_of(model), {"model": name, "kwargs": kwargs}
    )
    return model


def leaves(model_or_tree) -> dict[str, np.ndarray]:
    tree = weights.collections_of(model_or_tree) if isinstance(model_or_tree, nnx.Module) else model_or_tree
    return {k: np.asarray(v) for k, v in weights.flatten(tree).items()}


def tiny_config(**overrides):
    from configs import default

    c = default.get_config()
    c.model, c.model_args, c.img_size, c.patch_size = VIT, "depth=2,embed_dim=32,num_heads=2", 16, 4
    c.global_batch_size, c.progress_bar, c.log_every, c.eval_every = 32, False, 1, 0
    for k, v in overrides.items():
        c[k] = v
    return c


# --- the resampling kernel -------------------------------------------------------------
@pytest.mark.parametrize(
    "old,new", [((14, 14), (4, 4)), ((4, 4), (14, 14)), ((7, 5), (3, 9)), ((2, 2), (7, 3))]
)
def test_bicubic_resize_is_torchs(old, new):
    """The core's numpy kernel is torch's bicubic (antialias=True, align_corners=False), as timm's
    resample_abs_pos_embed calls it, down- and upsampling, non-square."""
    if torch is None:
        pytest.skip("needs torch and timm: pip install -e '.[torch]'")
    from timm.layers import resample_abs_pos_embed as timm_resample

    from jaxvit.layers.pos_embed import bicubic_resize, resample_abs_pos_embed

    grid = np.random.default_rng(0).standard_normal((1, *old, 6)).astype(np.float32)
    ref = (
        torch.nn.functional.interpolate(
            torch.from_numpy(grid).permute(0, 3, 1, 2),
            size=new,
            mode="bicubic",
            antialias=True,
            align_corners=False,
        )
        .permute(0, 2, 3, 1)
        .numpy()
    )
    np.testing.assert_allclose(bicubic_resize(grid, new), ref, atol=1e-5)
    if old[0] == old[1]:  # with a class token, through timm's own function
        pos = np.random.default_rng(1).standard_normal((1, 1 + old[0] * old[1], 6)).astype(np.float32)
        ours = resample_abs_pos_embed(pos, new, num_prefix_tokens=1)
        theirs = timm_resample(torch.from_numpy(pos), list(new), num_prefix_tokens=1).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


# --- the classifier -----------------------------------------------------------------------
def test_every_family_is_covered():
    families = {jaxvit.registry.get_entry(n).family for n in jaxvit.list_models()}
    covered = {jaxvit.registry.get_entry(name).family for name in CLASSIFIERS}
    covered.add("inception")  # test_inception_1000_class_weights_into_47_classes
    assert families == covered


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classifier_found_through_get_classifier(name):
    expected, kwargs = CLASSIFIERS[name], tiny_models()[name]
    model = jaxvit.abstract_model(name, num_classes=5, **kwargs)
    assert weights.classifier_paths(model) == expected
    params = weights.flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    for path in expected:  # each path names the 5-class layer's params
        shapes = [v.shape for k, v in params.items() if k == path + ".kernel"]
        assert shapes and shapes[0][-1] == 5, (path, shapes)
    headless = jaxvit.abstract_model(name, num_classes=0, **kwargs)
    assert weights.classifier_paths(headless) == []


def test_inception_1000_class_weights_into_47_classes(caplog):
    """The seed-003 recipe's case (configs/inception_v4_nonbinary.py:dtd from a converted 1000-class
    inception_v4): the classifier is ``last_linear``, found through get_classifier() and
    re-initialized; every other tensor, BatchNorm statistics included, loads. (Inception has no
    size keywords, and its random init costs ~10-15 s here: its weights are drawn on the host,
    conftest's filled_model; what load_into keeps is whatever the model held.)"""
    model = filled_model("inception_v4", num_classes=47)
    assert weights.classifier_paths(model) == ["last_linear"]
    fresh = leaves(model)
    rng = np.random.default_rng(0)
    pretrained = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in fresh.items()}
    pretrained["params.last_linear.kernel"] = np.zeros((1536, 1000), np.float32)
    pretrained["params.last_linear.bias"] = np.zeros((1000,), np.float32)
    trees = weights.unflatten_like(pretrained, weights.collections_of(model))
    with caplog.at_level(logging.INFO, logger="jaxvit"):
        report = weights.load_into(model, trees, source="init_from inception_v4")
    got = leaves(model)
    assert report.reinitialized == {"params.last_linear.kernel", "params.last_linear.bias"}
    for k, v in got.items():
        np.testing.assert_array_equal(v, fresh[k] if ".last_linear." in k else pretrained[k], err_msg=k)
    assert "last_linear: the checkpoint has 1000 classes, the model 47; re-initialized" in caplog.text


@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224", "mixer_s16_224"])
def test_other_class_count_reinitializes_the_classifier(tmp_path, caplog, name):
    kwargs = dict(VIT_ARGS, num_classes=7)
    if name.startswith("mixer"):
        kwargs = dict(num_blocks=1, embed_dim=32, img_size=16, patch_size=4, num_classes=7)
    source = save(tmp_path / "ckpt", name, **kwargs)
    with caplog.at_level(logging.INFO, logger="jaxvit"):
        model = jaxvit.create_model(name, checkpoint=str(tmp_path / "ckpt"), num_classes=3)
    fresh = leaves(jaxvit.create_model(name, **dict(kwargs, num_classes=3)))
    got, src = leaves(model), leaves(source)
    heads = ["head", "head_dist"] if "distilled" in name else ["head"]
    for k in got:
        is_head = any(k.startswith(f"params.{h}.") for h in heads)
        np.testing.assert_array_equal(got[k], fresh[k] if is_head else src[k], err_msg=k)
    assert got["params.head.kernel"].shape == (32, 3)
    for h in heads:
        assert f"{h}: the checkpoint has 7 classes, the model 3; re-initialized" in caplog.text


def test_headless_model_drops_the_checkpoints_classifier(tmp_path, caplog):
    """num_classes=0 (features only): the checkpoint's head, found through the model it was
    written by, is dropped; everything else loads."""
    source = save(tmp_path / "ckpt", VIT, **VIT_ARGS, num_classes=10)
    with caplog.at_level(logging.INFO, logger="jaxvit"):
        model = jaxvit.create_model(VIT, checkpoint=str(tmp_path / "ckpt"), num_classes=0)
    assert model.head is None
    got, src = leaves(model), leaves(source)
    assert set(src) - set(got) == {"params.head.kernel", "params.head.bias"}
    for k, v in got.items():
        np.testing.assert_array_equal(v, src[k], err_msg=k)
    assert "head: the checkpoint's 10-class classifier dropped" in caplog.text


def test_position_table_resampled_on_load(tmp_path, caplog):
    from jaxvit.layers.pos_embed import resample_abs_pos_embed

    source = save(tmp_path / "ckpt", VIT, **VIT_ARGS, num_classes=10)
    with caplog.at_level(logging.INFO, logger="jaxvit"):
        model = jaxvit.create_model(VIT, checkpoint=str(tmp_path / "ckpt"), img_size=32)
    expected = resample_abs_pos_embed(np.asarray(source.pos_embed[...]), (8, 8), num_prefix_tokens=1)
    np.testing.assert_allclose(np.asarray(model.pos_embed[...]), expected, atol=1e-6)
    assert "pos_embed resampled from a 4x4 to a 8x8 grid" in caplog.text


# --- strict and not -------------------------------------------------------------------------
def test_create_model_other_depth_is_one_line_naming_both(tmp_path):
    save(tmp_path / "ckpt", VIT, **VIT_ARGS, num_classes=10)
    with pytest.raises(CheckpointError) as e:
        jaxvit.create_model(VIT, checkpoint=str(tmp_path / "ckpt"), depth=3)
    msg = str(e.value)
    assert "\n" not in msg
    assert (
        "written by vit_tiny_patch16_224(depth=2, " in msg
        and "asked for vit_tiny_patch16_224(depth=3, " in msg
    )
    assert "params.blocks.2.attn.proj.bias (32,)" in msg and "strict=False" in msg


def test_init_from_strict_false_loads_what_matches(tmp_path, caplog):

    source = save(tmp_path / "ckpt", VIT, **VIT_ARGS, num_classes=10)
    config = tiny_config(
        model_args="depth=3,embed_dim=32,num_heads=2",
        init_from=str(tmp_path / "ckpt"),
        init_from_strict=False,
    )
    with caplog.at_level(logging.INFO, logger="jaxvit"):
        got, new = trainer_weights(config, 10)
    fresh, _ = trainer_weights(tiny_config(model_args="depth=3,embed_dim=32,num_heads=2"), 10)
    src = leaves(source)
    for k in got:
        np.testing.assert_array_equal(got[k], fresh[k] if ".blocks.2." in k else src[k], err_msg=k)
    assert new == {k.split(".", 1)[1] for k in got if ".blocks.2." in k}  # L2-SP / lr groups see them as new
    line = next(r.message for r in caplog.records if "strict=False" in r.message)
    assert "in the model, not the checkpoint (12): params.blocks.2.attn.proj.bias (32,)" in line, line

    # the other way: extra blocks in the checkpoint are listed and ignored
    caplog.clear()
    config = tiny_config(
        model_args="depth=1,embed_dim=32,num_heads=2",
        init_from=str(tmp_path / "ckpt"),
        init_from_strict=False,
    )
    with caplog.at_level(logging.INFO, logger="jaxvit"):
        _, new = trainer_weights(config, 10)
    assert new == set()
    assert "in the checkpoint, not the model (12): params.blocks.1.attn.proj.bias (32,)" in caplog.text


def test_init_from_other_depth_fails_in_one_line_before_writing(tmp_path):
    from jaxvit.train import loop

    save(tmp_path / "ckpt", VIT, **VIT_ARGS, num_classes=10)
    workdir = tmp_path / "run"
    config = tiny_config(
        model_args="depth=3,embed_dim=32,num_heads=2", init_from=str(tmp_path / "ckpt"), total_steps=1
    )
    with pytest.raises(CheckpointError) as e:
        loop.run(config, str(workdir))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"init_from {tmp_path / 'ckpt'} does not fit the model")
    assert "written by vit_tiny_patch16_224(depth=2, embed_dim=32" in msg
    assert "asked for vit_tiny_patch16_224(depth=3, embed_dim=32" in msg
    assert "params.blocks.2.attn.proj.bias (32,)" in msg and "--config.init_from_strict=False" in msg
    assert not workdir.exists()


# --- EMA and best weights out of a run -------------------------------------------------------
@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """A tiny ViT with model EMA: 4 steps, evals at 2 and 4, one checkpoint kept."""
    from jaxvit.train import loop

    workdir = tmp_path_factory.mktemp("ema") / "run"
    config = tiny_config(
        total_steps=4,
        eval_every=2,
        ckpt_every=1,
        keep_checkpoints=1,
        model_ema=True,
        model_ema_decay=0.5,
        lr=3e-3,
        warmup_steps=1,
    )
    return workdir, loop.run(config, str(workdir))


def restored_state(workdir: Path) -> dict:
    step = weights.latest_steps(str(workdir / "checkpoints"))[-1]
    return weights.restore_on_one_device(str(workdir / "checkpoints" / str(step) / "state"))


def test_best_checkpoint_kept_out_of_rotation_and_reported(ema_run):
    workdir, result = ema_run
    evals = [m for m in read_metrics(workdir) if "eval_ema_top1" in m]
    assert [m["step"] for m in evals] == [2, 4]
    best = max(evals, key=lambda m: m["eval_ema_top1"])  # first of equals: only a better eval replaces it
    meta = json.loads((workdir / "best" / weights.META_FILE).read_text())
    assert (meta["step"], meta["metric"], meta["value"]) == (
        best["step"],
        "eval_ema_top1",
        best["eval_ema_top1"],
    )
    assert meta["ema"] and meta["model"] == VIT and meta["class_names"][:2] == ["0", "1"]
    assert result["best_step"] == best["step"] and result["best_eval_ema_top1"] == best["eval_ema_top1"]
    assert os.listdir(workdir / "checkpoints") == ["4"]  # keep_checkpoints=1 rotated the rest away
    assert not [p for p in os.listdir(workdir) if p.startswith(".best")]  # no staging left behind
    model = jaxvit.create_model(VIT, checkpoint=str(workdir / "best"))
    assert model.head.kernel.shape == (32, 10)


def test_ema_weights_through_predict_export_and_init_from(ema_run, tmp_path, capsys):
    if torch is None:
        pytest.skip("export needs torch and timm: pip install -e '.[torch]'")
    tf = import_tf()
    from safetensors.numpy import load_file

    from convert.export import export_checkpoint
    from jaxvit import predict

    workdir, _ = ema_run
    state = restored_state(workdir)
    ema, raw = leaves({"params": state["ema_params"]}), leaves({"params": state["params"]})
    assert not np.array_equal(ema["params.head.kernel"], raw["params.head.kernel"])

    model, names, _ = predict.load(str(workdir), ema=True)
    for k, v in ema.items():
        np.testing.assert_array_equal(leaves(model)[k], v, err_msg=k)
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(tf.io.encode_png(img).numpy())
    outputs = []
    for flags in (["--ema"], []):
        assert predict.main(["--checkpoint", str(workdir), *flags, str(path)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] != outputs[1] and len(outputs[0].splitlines()) == 6

    out = tmp_path / "ema.safetensors"
    export_checkpoint(str(workdir), str(out), ema=True)
    np.testing.assert_array_equal(load_file(str(out))["head.weight"], ema["params.head.kernel"].T)

    config = tiny_config(init_from=str(workdir), init_from_ema=True)
    got, _ = trainer_weights(config, 10)
    for k, v in ema.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_no_ema_weights_is_a_clear_error(tmp_path, capsys):
    if torch is None:
        pytest.skip("export needs torch and timm: pip install -e '.[torch]'")
    save(tmp_path / "ckpt", VIT, **VIT_ARGS, num_classes=10)
    from convert.export import main as export_main
    from jaxvit import predict

    assert predict.main(["--checkpoint", str(tmp_path / "ckpt"), "--ema", "x.png"]) == 2
    assert (
        export_main(["--checkpoint", str(tmp_path / "ckpt"), "--ema", "--out", str(tmp_path / "x.pth")]) == 2
    )
    for line in capsys.readouterr().err.splitlines():
        assert (
            line.startswith("error: ")
            and "holds no EMA weights" in line
            and "--config.model_ema=True" in line
        )
    assert not (tmp_path / "x.pth").exists()


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")
    }


def test_rerun_with_another_model_size_fails_before_restore(ema_run):
    """main.py on a workdir written by another model: one line, exit 2, the workdir untouched."""
    workdir, _ = ema_run
    before = snapshot(workdir)
    status, _, err = main_in_process(
        workdir,
        "--config.model_args=depth=3,embed_dim=32,num_heads=2",
        "--config.total_steps=4",
        "--config.model_ema=True",
    )
    assert status == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    msg = errors[0]
    assert f"workdir {workdir} holds a run (step 4) of vit_tiny_patch16_224(depth=2, " in msg
    assert "this config asks for vit_tiny_patch16_224(depth=3, " in msg
    assert "model_args 'depth=2,embed_dim=32,num_heads=2' -> 'depth=3,embed_dim=32,num_heads=2'" in msg
    first = r"in the model, not the workdir \(\d+\): params\.blocks\.2\.attn\.proj\.bias \(32,\)"
    assert re.search(first, msg), msg
    assert "fix: a new --workdir" in msg
    assert "partial_restore" not in err
    assert snapshot(workdir) == before


def test_rerun_with_another_batch_or_optimizer_is_caught(ema_run):
    from jaxvit.train import loop

    workdir, _ = ema_run
    before = snapshot(workdir)
    with pytest.raises(CheckpointError, match="global_batch_size 32 -> 16"):
        loop.run(tiny_config(total_steps=4, model_ema=True, global_batch_size=16), str(workdir))
    with pytest.raises(CheckpointError, match=r"in the workdir, not the model \(\d+\): ema_params"):
        loop.run(tiny_config(total_steps=4, model_ema=False), str(workdir))
    assert snapshot(workdir) == before


def test_best_is_replaced_only_by_a_better_eval_and_survives_a_restart(tmp_path):
    from jaxvit.train.loop import BestCheckpoint

    def state(value):
        return {"params": {"w": np.full(3, value, np.float32)}, "batch_stats": {}, "opt_state": {}}

    best = BestCheckpoint(str(tmp_path), "eval_top1", {"model": VIT, "kwargs": {}})
    best.update(state(1.0), 10, {"eval_top1": 0.5})
    best.update(state(2.0), 20, {"eval_top1": 0.5})  # equal: the earlier stays
    best.update(state(3.0), 30, {"eval_top1": 0.4})
    assert best.summary() == {"best_step": 10.0, "best_eval_top1": 0.5}
    again = BestCheckpoint(str(tmp_path), "eval_top1", {"model": VIT, "kwargs": {}})  # a resumed run
    again.update(state(4.0), 40, {"eval_top1": 0.45})
    assert weights.read_model_meta(str(tmp_path / "best"))["step"] == 10
    again.update(state(5.0), 50, {"eval_top1": 0.75})
    trees, meta = weights.read_model_checkpoint(str(tmp_path / "best"))
    assert (meta["step"], meta["value"], meta["ema"]) == (50, 0.75, False)
    np.testing.assert_array_equal(trees["params"]["w"], np.full(3, 5.0))
    assert set(trees) == {"params"}  # no opt_state in a model checkpoint
    with pytest.raises(CheckpointError, match="holds no EMA weights"):
        weights.read_model_checkpoint(str(tmp_path / "best"), ema=True)


def test_replacing_a_model_checkpoint_is_atomic(tmp_path):
    """``best`` is replaced by a rename; a replace cut short between its renames is put back."""
    target = tmp_path / "best"
    a = jax.tree.map(np.asarray, {"params": {"w": np.ones(3)}})
    weights.save_model_checkpoint(str(target), a, {"model": VIT, "step": 1})
    weights.save_model_checkpoint(
        str(target), {"params": {"w": np.zeros(3)}}, {"model": VIT, "step": 2}, replace=True
    )
    assert weights.read_model_meta(str(target))["step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["best"]
    os.rename(target, tmp_path / ".best.old")
    weights.recover_interrupted_save(str(target))
    assert weights.read_model_meta(str(target))["step"] == 2
    with pytest.raises(FileExistsError):
        weights.save_model_checkpoint(str(target), a, {"model": VIT})
