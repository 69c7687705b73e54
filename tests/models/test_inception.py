"""Inception-v4: timm's parameter count, fp32 logits parity with non-trivial BatchNorm
running statistics, torch padding/pooling semantics, train/eval BatchNorm behaviour,
bfloat16 compute and timm's model interface."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import filled_model
from flax import nnx

import jaxvit
from jaxvit._compat import quick_tracer_probes
from jaxvit.layers.conv_bn import AvgPool2d, ConvNormAct, MaxPool2d
from jaxvit.models.base import param_count

NAME = "inception_v4"
TOL = 1e-4


def _torch():
    torch = pytest.importorskip("torch", reason="timm parity needs torch: pip install -e '.[torch]'")
    pytest.importorskip("timm", reason="timm parity needs timm: pip install -e '.[torch]'")
    return torch


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def images(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-1, 1, (n, 3, size, size)).astype(np.float32)


def batch_stats(model) -> dict[str, np.ndarray]:
    """Running statistics by dotted path (``features.4.branch1.0.bn.mean``)."""
    tree = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    return {
        ".".join(str(k.key) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(tree)
    }


@pytest.fixture(scope="module")
def timm_model():
    """timm's inception_v4 in eval mode, every weight moved off its init, with running
    statistics of real activations: one cumulative train-mode pass over other images of
    the test size, then perturbed. The variances are inflated 1.5x or more: statistics that
    normalize exactly make this random 150-layer network chaotic (timm's own fp32 and fp64
    logits then differ by 1e-2); at 1.5x fp32 rounding stays near 1e-6 while the logits
    still tell the two images apart."""
    torch = _torch()
    import timm

    torch.manual_seed(0)
    model = timm.create_model(NAME, pretrained=False)
    gen = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        for bn in bns:
            bn.momentum = None  # cumulative average: one pass stores that batch's statistics
        model.train()(torch.from_numpy(images(299, seed=1)))
        for bn in bns:
            bn.momentum = 0.1
            noise = torch.randn((2,) + bn.running_mean.shape, generator=gen)
            bn.running_mean.add_(0.05 * bn.running_var.sqrt() * noise[0])
            bn.running_var.mul_(1.5 + 0.1 * noise[1].abs())
    return model.eval()


@pytest.fixture(scope="module")
def fresh():
    """Shapes only (the counts and the classifier interface need no weights; a new head is real)."""
    return jaxvit.abstract_model(NAME)


@pytest.fixture(scope="module")
def converted(timm_model):
    from convert import convert_state_dict

    model, _ = convert_state_dict(NAME, timm_model.state_dict(), log=lambda _: None)
    return model


def test_param_count_matches_timm(fresh):
    _torch()
    import timm

    tmodel = timm.create_model(NAME, pretrained=False, device="meta")
    model = fresh
    assert param_count(model) == sum(p.numel() for p in tmodel.parameters()) == 42_679_816
    stats = sum(b.numel() for k, b in tmodel.named_buffers() if k.endswith(("running_mean", "running_var")))
    assert param_count(model, nnx.BatchStat) == stats


def test_default_cfg_matches_timm():
    _torch()
    import timm

    cfg = jaxvit.registry.get_entry(NAME).default_cfg
    theirs = timm.create_model(NAME, pretrained=False).pretrained_cfg
    c, h, w = theirs["input_size"]
    assert cfg["input_size"] == (h, w, c) == (299, 299, 3)
    for key in ("mean", "std", "crop_pct", "interpolation", "classifier", "first_conv"):
        assert tuple(np.atleast_1d(cfg[key])) == tuple(np.atleast_1d(theirs[key])), key
    assert jaxvit.list_models(family="inception") == [NAME]


def _features_and_logits(model, x):
    """The stage ends timm's feature_info names, and the logits, from one forward."""
    ends = [int(f["module"].split(".")[1]) for f in model.feature_info]
    taps = []
    with quick_tracer_probes():  # as model(x) traces: see jaxvit/_compat.py
        for i, block in enumerate(model.features):
            x = block(x)
            if i in ends:
                taps.append(x)
        return taps, model.forward_head(x)


# Jitted once per mode: eager dispatch compiles each of the few hundred ops on its own and
# measured slower here (this file: ~118 s eager vs ~48 s jitted from a cold compilation
# cache on 2 busy cores); compiled programs also land in the persistent cache.
forward = nnx.jit(_features_and_logits)


def test_logits_match_timm_in_eval_mode(timm_model, converted):
    torch = _torch()
    x = images(299)
    with torch.no_grad():
        last, t_taps = timm_model.forward_intermediates(torch.from_numpy(x))
        expected = timm_model.forward_head(last).numpy()
    # The converted statistics are far from a fresh BatchNorm's (0, 1).
    bn = converted.features[10].branch1[1].bn
    assert np.abs(np.asarray(bn.mean[...])).max() > 0.5 and np.abs(np.asarray(bn.var[...]) - 1).max() > 0.5
    eval_model = nnx.view(converted, use_running_average=True)
    assert not converted.features[0].bn.use_running_average  # a view; the model itself is untouched
    taps, got = forward(eval_model, nhwc(x))
    for tap, t_tap, info in zip(taps, t_taps, converted.feature_info):
        np.testing.assert_allclose(np.asarray(tap), nhwc(t_tap.numpy()), atol=TOL, err_msg=info["module"])
    got = np.asarray(got)
    diff = float(np.abs(got - expected).max())
    print(f"{NAME} 299px eval: max |logits diff| {diff:.2e}, |logits| up to {np.abs(expected).max():.2f}")
    assert got.dtype == np.float32 and got.shape == (2, 1000)
    # The logits carry signal (and differ between the images), so 1e-4 is a tight bound.
    assert expected.std() > 0.5 and np.abs(expected[0] - expected[1]).max() > 0.05
    assert diff <= TOL


def test_batch_stats_update_in_train_mode_and_stay_in_eval_mode(converted):
    model = nnx.clone(converted)
    model.train()
    x = nhwc(images(299, seed=2))
    before = batch_stats(model)
    got_train = np.asarray(forward(model, x)[1])
    after = batch_stats(model)
    assert len(after) == 2 * sum(isinstance(m, ConvNormAct) for _, m in nnx.iter_modules(model))
    assert all(not np.array_equal(before[k], after[k]) for k in before)

    # Switched in place, as timm's .eval(); the parity test uses the nnx.view the trainer uses.
    model.eval()
    assert all(m.bn.use_running_average for _, m in nnx.iter_modules(model) if isinstance(m, ConvNormAct))
    got_eval = np.asarray(forward(model, x)[1])
    assert all(np.array_equal(after[k], v) for k, v in batch_stats(model).items())
    assert not np.allclose(got_eval, got_train, atol=1e-3)


def test_conv_norm_act_train_step_matches_torch():
    """One layer, where train-mode outputs are well conditioned: batch normalization as
    torch's, running mean moved by torch's momentum 0.1 (Flax 0.9); the running variance
    by the biased batch variance where torch takes the unbiased one."""
    torch = _torch()
    from timm.layers import ConvNormAct as TorchConvNormAct

    torch.manual_seed(5)
    x = images(11, n=3, seed=5)
    tconv = TorchConvNormAct(3, 8, 3, stride=2, padding=1, norm_kwargs=dict(eps=1e-3))
    conv = _converted_layer(tconv, ConvNormAct(3, 8, 3, 2, 1, eps=1e-3, rngs=nnx.Rngs(0)))
    tconv.train()
    with torch.no_grad():
        expected = tconv(torch.from_numpy(x)).numpy()
        pre = tconv.conv(torch.from_numpy(x))
    np.testing.assert_allclose(np.asarray(conv(nhwc(x))), nhwc(expected), atol=1e-5)
    np.testing.assert_allclose(np.asarray(conv.bn.mean[...]), tconv.bn.running_mean.numpy(), atol=1e-6)
    n = pre[:, 0].numel()  # samples per channel: batch x output pixels
    biased = pre.var(dim=(0, 2, 3), unbiased=False).numpy()
    np.testing.assert_allclose(np.asarray(conv.bn.var[...]), 0.9 + 0.1 * biased, rtol=1e-5)
    torch_var = tconv.bn.running_var.numpy()
    np.testing.assert_allclose(torch_var, 0.9 + 0.1 * biased * n / (n - 1), rtol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = filled_model(NAME, dtype="bfloat16", num_classes=10, drop_rate=0.2, img_size=75)
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.float32)}
    x = jnp.asarray(nhwc(images(75)))  # the smallest input the network takes
    before = batch_stats(model)
    taps, logits = forward(model, x)  # train mode: the statistics update, and stay float32
    assert taps[-1].dtype == jnp.bfloat16 and taps[-1].shape == (2, 1, 1, 1536)
    assert logits.dtype == jnp.float32 and logits.shape == (2, 10)
    assert bool(jnp.isfinite(logits).all())
    after = batch_stats(model)
    assert {v.dtype for v in after.values()} == {np.dtype(np.float32)}
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def _converted_layer(tlayer, layer):
    """Loads a timm layer's state dict into its jaxvit twin with the converter's rules."""
    from convert.rules import to_jaxvit
    from jaxvit.train.checkpoint import assign

    sd = {k: v.detach().numpy() for k, v in tlayer.state_dict().items()}
    assign(layer, to_jaxvit(layer, sd), source="test")
    return layer


def test_padding_and_pooling_follow_torch():
    """Asymmetric kernels with explicit padding, stride-2 valid convs, floor-mode max pool
    and average pooling that leaves the padding out of the count."""
    torch = _torch()
    from timm.layers import ConvNormAct as TorchConvNormAct

    torch.manual_seed(3)
    x = images(9, n=2, seed=3) * 3
    xt = torch.from_numpy(x)
    pool = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    np.testing.assert_allclose(
        np.asarray(AvgPool2d(3, 1, 1, count_include_pad=False)(nhwc(x))), nhwc(pool(xt).numpy()), atol=1e-6
    )
    pool = torch.nn.AvgPool2d(3, stride=2, padding=1)
    np.testing.assert_allclose(np.asarray(AvgPool2d(3, 2, 1)(nhwc(x))), nhwc(pool(xt).numpy()), atol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(MaxPool2d(3, 2)(nhwc(x))), nhwc(torch.nn.MaxPool2d(3, stride=2)(xt).numpy())
    )
    for kernel, stride, padding in [((1, 7), 1, (0, 3)), ((3, 1), 1, (1, 0)), (3, 2, 0), (3, 1, 1)]:
        tconv = TorchConvNormAct(3, 4, kernel, stride=stride, padding=padding, norm_kwargs=dict(eps=1e-3))
        tconv.bn.running_mean.normal_()
        tconv.eval()
        conv = _converted_layer(tconv, ConvNormAct(3, 4, kernel, stride, padding, eps=1e-3, rngs=nnx.Rngs(0)))
        conv.eval()
        with torch.no_grad():
            np.testing.assert_allclose(np.asarray(conv(nhwc(x))), nhwc(tconv(xt).numpy()), atol=1e-5)


def test_timm_interface(fresh):
    model = nnx.clone(fresh)
    assert model.global_pool == "avg" and model.last_linear.kernel.shape == (1536, 1000)
    model.reset_classifier(5)
    assert model.get_classifier() is model.last_linear and model.last_linear.kernel.shape == (1536, 5)
    assert model.group_matcher()["stem"] == r"^features\.[012]\." and model.no_weight_decay() == set()
    assert [f["num_chs"] for f in model.feature_info] == [64, 160, 384, 1024, 1536]
    model.reset_classifier(7, "catavgmax")
    assert model.last_linear.kernel.shape == (3072, 7) and model.head_hidden_size == 3072
    model.reset_classifier(0, "")
    assert model.last_linear is None and model.num_classes == 0
    with pytest.raises(ValueError, match="num_classes=0"):
        model.reset_classifier(3, "")
    with pytest.raises(ValueError, match="at least 75"):
        jaxvit.create_model(NAME, img_size=64)
    # The head alone, on features of the real layout.
    model.reset_classifier(3, "avg", rngs=nnx.Rngs(1))
    model.eval()
    feats = jnp.asarray(np.random.RandomState(4).normal(size=(2, 3, 3, 1536)), jnp.float32)
    np.testing.assert_allclose(model.forward_head(feats, pre_logits=True), feats.mean(axis=(1, 2)), atol=1e-6)
    logits = model.forward_head(feats)
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
