"""Seed 001 and 004 models: DEMS-ViT and vitookit's multi-resolution ViT (``mvit2_tiny_patch2``)
against minimal torch transcriptions of their sources (perturbed weights, fp32 logits within
1e-4, converted by jaxvit's per-layer rules), the seeds' geometry and parameter counts, the
Perceiver presets' counts (seed 001's table), and the pick-1-to-4 policy's per-op probability."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled_forward
from flax import nnx

import jaxvit
from jaxvit.models.base import param_count

TOL = 1e-4
NOISE = 0.02


def _torch():
    return pytest.importorskip("torch", reason="parity needs torch: pip install -e '.[torch]'")


# --- torch transcriptions of the sources (reference only) --------------------------------------
def torch_dems(*, img_size, patch_size, dim, depth, heads, merge_num, merge_layer, num_classes):
    """erow/vitookit vitookit/models/dmes.py (d6f4dd1) ``DEMS_ViT``, minimally transcribed."""
    torch = _torch()
    from timm.models.vision_transformer import Block
    from torch import nn

    def labels(img, p1, p2, s2):
        grid1, grid2, n = img // p1, (img - p2) // s2 + 1, p2 // p1
        i = torch.div(torch.arange(0, img - p2 + s2, step=s2), p1, rounding_mode="trunc")
        r = i.view(grid2, 1) + torch.arange(0, n).view(1, n)
        c = i.view(grid2, 1) + torch.arange(0, n).view(1, n)
        return (r.view(grid2, 1, n, 1) * grid1 + c.view(1, grid2, 1, n)).view(grid2 * grid2, n * n)

    class PE(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p
            self.proj = nn.Conv2d(3, dim, p, p)

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)

    class PEDW(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.p = patch_size * s
            self.proj = nn.Sequential()
            self.proj.add_module("proj-1", nn.Conv2d(3, 3, self.p // 4, self.p // 4, bias=False, groups=3))
            self.proj.add_module("proj-2", nn.Conv2d(3, 3, 4, 4, bias=False, groups=3))
            self.proj.add_module("point_wise", nn.Conv2d(3, dim, 1, 1))

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)

    class Interaction(nn.Module):
        def __init__(self, out, norm):
            super().__init__()
            self.norm = norm
            self.fc1 = nn.Linear(dim, dim * 2)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(dim * 2, dim // 2)
            self.fc3 = nn.Linear(dim // 2, out)
            self.scale = nn.Parameter(torch.ones(1, 1, 1, 1))

        def forward(self, x):
            xo = x.permute(0, 1, 3, 2)
            w = self.fc3(self.act(self.fc2(self.act(self.fc1(self.norm(x))))))
            w = torch.softmax(w * self.scale, dim=-2)
            return torch.einsum("bnik,bnkj->bnij", xo, w).permute(0, 1, 3, 2)

    def sincos(grid):
        h, w = grid
        gw, gh = torch.meshgrid(torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32),
                                indexing="ij")
        pd = dim // 4
        omega = 1.0 / (10000.0 ** (torch.arange(pd, dtype=torch.float32) / pd))
        ow, oh = torch.einsum("m,d->md", gw.flatten(), omega), torch.einsum("m,d->md", gh.flatten(), omega)
        return nn.Parameter(torch.cat([ow.sin(), ow.cos(), oh.sin(), oh.cos()], 1)[None], requires_grad=False)

    class DEMS(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed, self.patch_embed_2 = PE(patch_size), PE(patch_size * 2)
            self.patch_embed_4, self.patch_embed_8 = PEDW(4), PEDW(8)
            self.num_region = (img_size // self.patch_embed_8.p) ** 2
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = sincos((img_size // patch_size,) * 2)
            self.pos_embed_2 = sincos((img_size // (2 * patch_size),) * 2)
            self.pos_embed_4 = sincos((img_size // self.patch_embed_4.p,) * 2)
            self.pos_embed_8 = sincos((img_size // self.patch_embed_8.p,) * 2)
            self.blocks = nn.ModuleList([Block(dim, heads, 4.0, qkv_bias=False, norm_layer=nn.LayerNorm)
                                         for _ in range(depth)])
            self.norm, self.norm_merge1, self.norm_merge2 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.head = nn.Linear(dim, num_classes)
            self.l1, self.l2 = merge_layer[0] - 1, merge_layer[1] - 1
            self.mlp1 = Interaction(merge_num[0], self.norm_merge1)
            self.mlp2 = Interaction(merge_num[1], self.norm_merge2)

        def convert(self, x, lab):
            b, _, c = x.shape
            return x[:, lab.reshape(-1)].reshape(b, self.num_region, -1, c)

        def merge(self, x, mlp):
            b, _, c = x.shape
            xp = mlp(x[:, 1:].reshape(b, self.num_region, -1, c)).reshape(b, -1, c)
            return torch.cat((x[:, :1], xp), 1)

        def forward(self, x):  # NHWC in, as jaxvit
            x = x.permute(0, 3, 1, 2)
            p8 = self.patch_embed_8.p
            xs = [self.patch_embed(x) + self.pos_embed, self.patch_embed_2(x) + self.pos_embed_2,
                  self.patch_embed_4(x) + self.pos_embed_4]
            ps = [patch_size, patch_size * 2, self.patch_embed_4.p]
            xs = [self.convert(t, labels(img_size, p, p8, p8)) for t, p in zip(xs, ps)]
            xs.append((self.patch_embed_8(x) + self.pos_embed_8).unsqueeze(2))
            b = x.shape[0]
            x = torch.cat(xs, 2).reshape(b, -1, dim)
            x = torch.cat((self.cls_token.expand(b, 1, -1), x), 1)
            for i, blk in enumerate(self.blocks):
                if i == self.l1:
                    x = self.merge(x, self.mlp1)
                if i == self.l2:
                    x = self.merge(x, self.mlp2)
                x = blk(x)
            return self.head(self.norm(x)[:, 0])

    return DEMS()


def _abstract(name: str, **kw):
    """The model as shapes only (no init, no compute): fast for the full-size presets."""
    return jaxvit.abstract_model(name, num_classes=10, **kw)


def _out_shapes(model, x_shape):
    """(features, pre-logits, logits) shapes of ``model`` (abstract or not) on an input of ``x_shape``."""
    graphdef, state = nnx.split(model)

    def run(state, x):
        m = nnx.view(nnx.merge(graphdef, state), deterministic=True)
        feats = m.forward_features(x)
        return feats, m.forward_head(feats, pre_logits=True), m.forward_head(feats)

    return [o.shape for o in jax.eval_shape(run, state, jax.ShapeDtypeStruct(x_shape, jnp.float32))]


def _perturbed(ref):
    torch = _torch()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            if p.requires_grad:
                p.add_(NOISE * torch.randn_like(p))
    return ref.eval()


def _logits_diff(ref, model, size, batch=2):
    torch = _torch()
    x = np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    got = np.asarray(compiled_forward(nnx.view(model, deterministic=True))(jnp.asarray(x)))
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


DEMS_SMALL = dict(embed_dim=32, depth=4, num_heads=2, merge_num=(8, 4), merge_layer=(2, 4))


def test_dems_logits_match_source():
    torch = _torch()
    from convert import convert_state_dict
    from jaxvit.models.dems import sincos_2d

    kw = DEMS_SMALL
    torch.manual_seed(0)
    ref = _perturbed(torch_dems(img_size=32, patch_size=2, dim=kw["embed_dim"], depth=kw["depth"],
                                heads=kw["num_heads"], merge_num=kw["merge_num"], merge_layer=kw["merge_layer"],
                                num_classes=10))
    sd = ref.state_dict()
    assert "mlp1.norm.weight" in sd and "norm_merge1.weight" in sd  # one module, two keys
    # The fixed sin-cos tables are not parameters here: they must equal ours, then are dropped.
    for key, grid in (("pos_embed", 16), ("pos_embed_2", 8), ("pos_embed_4", 4), ("pos_embed_8", 2)):
        np.testing.assert_allclose(sd.pop(key).numpy(), sincos_2d((grid, grid), kw["embed_dim"]), atol=1e-6)
    model, _ = convert_state_dict("dems_tiny_patch2_32", sd, log=lambda _: None, **kw)
    assert model.mlp1.norm is model.norm_merge1
    n_ref = sum(p.numel() for p in ref.parameters() if p.requires_grad)
    assert param_count(model) == n_ref
    diff = _logits_diff(ref, model, 32)
    print(f"dems max |logit diff| {diff:.2e}")
    assert diff < TOL


def test_dems_geometry_and_param_counts():
    from jaxvit.models.dems import get_patch_contrast_labels

    # 16x16 fine grid, 2x2 regions of 8x8: region 1 (top right) starts at column 8 of row 0.
    lab = get_patch_contrast_labels(32, 2, 16, 16)
    assert lab.shape == (4, 64)
    assert lab[1, 0] == 8 and lab[1, 8] == 16 + 8 and lab[2, 0] == 8 * 16
    assert sorted(lab.reshape(-1)) == list(range(256))  # a partition of the grid
    model = _abstract("dems_tiny_patch2_32")
    # after the second merge: the class token and 32 tokens in each of the 4 regions
    assert _out_shapes(model, (2, 32, 32, 3)) == [(2, 1 + 4 * 32, 192), (2, 192), (2, 10)]
    # Parameters (requires_grad ones, as torch counts) of the tiny and small models, 10 classes:
    # the parity test shows the structure is the source's.
    assert param_count(model) == 5_579_784
    assert param_count(_abstract("dems_small_patch2_32")) == 22_218_504
    assert model.get_classifier() is model.head
    model.reset_classifier(0)
    assert _out_shapes(model, (1, 32, 32, 3))[2] == (1, 192)


def torch_msvit(*, img_sizes, patch_size, dim, depth, num_heads, num_classes, pool_heads=12):
    """erow/vitookit vitookit/models/mvit.py (d6f4dd1) ``MultiScaleVisionTransformer`` with
    mvit2_tiny_patch2's settings (shared embed and head, causal, LayerScale blocks), minimally
    transcribed."""
    torch = _torch()
    from functools import partial

    import torch.nn.functional as F
    from timm.layers import Mlp, resample_abs_pos_embed
    from torch import nn

    norm = partial(nn.LayerNorm, eps=1e-6)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.num_heads = num_heads
            self.qkv = nn.Linear(dim, dim * 3, bias=True)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x, mask):
            b, n, c = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.proj(x.transpose(1, 2).reshape(b, n, c))

    class LSBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.attn, self.norm2 = norm(dim), Attention(), norm(dim)
            self.mlp = Mlp(dim, dim * 4)
            self.gamma_1 = nn.Parameter(1e-4 * torch.ones(dim))
            self.gamma_2 = nn.Parameter(1e-4 * torch.ones(dim))

        def forward(self, x, mask):
            x = x + self.gamma_1 * self.attn(self.norm1(x), mask)
            return x + self.gamma_2 * self.mlp(self.norm2(x))

    class Pool(nn.Module):
        def __init__(self, latent_len):
            super().__init__()
            self.num_heads = pool_heads
            self.latent = nn.Parameter(torch.zeros(1, latent_len, dim))
            self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, dim * 2), nn.Linear(dim, dim)
            self.norm, self.mlp = norm(dim), Mlp(dim, dim * 4)

        def forward(self, x, idx):
            b, n, c = x.shape
            h = self.num_heads
            q = self.q(self.latent[:, idx:idx + 1].expand(b, -1, -1)).reshape(b, 1, h, c // h).transpose(1, 2)
            k, v = self.kv(x).reshape(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
            x = self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, 1, c))
            return (x + self.mlp(self.norm(x)))[:, 0]

    class MSViT(nn.Module):
        def __init__(self):
            super().__init__()
            grid = img_sizes[-1] // patch_size
            self.grid = (grid, grid)
            self.patch_embed = nn.Module()
            self.patch_embed.proj = nn.Conv2d(3, dim, patch_size, patch_size)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim))
            self.temporal_pos_embed = nn.Parameter(torch.zeros(1, len(img_sizes), 1, dim))
            self.blocks = nn.ModuleList([LSBlock() for _ in range(depth)])
            self.head = nn.Linear(dim, num_classes)
            self.attn_pool = Pool(len(img_sizes))
            self.norm = norm(dim)
            tokens = [1 + (s // patch_size) ** 2 for s in img_sizes]
            acc = [0] + list(np.cumsum(tokens))
            self.acc = acc
            self.mask = torch.zeros((acc[-1], acc[-1]), dtype=torch.bool)
            for i in range(len(img_sizes)):
                self.mask[acc[i]:acc[i + 1], :acc[i + 1]] = True

        def forward(self, imgs):  # NHWC in, as jaxvit
            imgs = imgs.permute(0, 3, 1, 2)
            tokens = []
            for i, s in enumerate(img_sizes):
                x = F.interpolate(imgs, size=s, mode="bilinear", align_corners=False)
                x = self.patch_embed.proj(x).permute(0, 2, 3, 1)
                b, h, w, c = x.shape
                pos = resample_abs_pos_embed(self.pos_embed, new_size=(h, w), old_size=self.grid,
                                             num_prefix_tokens=0)
                x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, -1, c) + pos], 1)
                tokens.append(x + self.temporal_pos_embed[:, i])
            x = torch.cat(tokens, 1)
            for blk in self.blocks:
                x = blk(x, self.mask)
            z = self.norm(x)
            i = len(img_sizes) - 1
            return self.head(self.attn_pool(z[:, self.acc[i]:self.acc[i + 1]], i))

    return MSViT()


MSVIT_SMALL = dict(embed_dim=24, depth=2, num_heads=4, pool_heads=4)


def test_msvit_logits_match_source():
    torch = _torch()
    from convert import convert_state_dict

    kw = MSVIT_SMALL
    torch.manual_seed(0)
    ref = torch_msvit(img_sizes=(16, 32), patch_size=2, dim=kw["embed_dim"], depth=kw["depth"],
                      num_heads=kw["num_heads"], num_classes=10, pool_heads=kw["pool_heads"])
    with torch.no_grad():  # gammas start at 1e-4: lift them so the blocks matter to the logits
        for blk in ref.blocks:
            blk.gamma_1.fill_(0.5)
            blk.gamma_2.fill_(0.5)
    ref = _perturbed(ref)
    model, _ = convert_state_dict("mvit2_tiny_patch2", ref.state_dict(), log=lambda _: None, **kw)
    assert param_count(model) == sum(p.numel() for p in ref.parameters())
    diff = _logits_diff(ref, model, 32)
    print(f"mvit2 max |logit diff| {diff:.2e}")
    assert diff < TOL


def test_msvit_geometry():
    from jaxvit.models.msvit import frame_mask

    model = _abstract("mvit2_tiny_patch2")
    # the seed's geometry: 16 and 32 px frames of 2x2 patches, 12 heads (the source's default)
    assert model.img_sizes == (16, 32) and model.tokens_per_frame == (65, 257)
    assert model.blocks[0].attn.num_heads == 12 and model.attn_pool.num_heads == 12
    mask = frame_mask(model.tokens_per_frame)
    assert mask[:65, :65].all() and not mask[:65, 65:].any() and mask[65:].all()
    assert _out_shapes(model, (2, 32, 32, 3)) == [(2, 65 + 257, 192), (2, 192), (2, 10)]
    assert param_count(model) == 5_842_378  # 10 classes; the parity test shows the structure is the source's


# --- seed 001: the pick-1-to-4 policy applies torchvision's Random* ops with p=0.5 ----------------
@pytest.mark.parametrize("name,p", [("hflip", 0.5), ("vflip", 0.5), ("equalize", 0.5), ("rotate", 1.0)])
def test_pick_policy_applies_each_op_with_the_sources_probability(name, p):
    tf = pytest.importorskip("tensorflow")
    from jaxvit.data import pick

    assert pick.PICK_PROB.get(name, 1.0) == p
    # equalize needs >255 pixels
    image = tf.constant(np.random.default_rng(0).integers(0, 200, (32, 32, 3)), tf.float32)
    policy = tf.function(pick.pick_policy((name,), 1, 1, (32, 32), "bilinear"))
    n = 400
    changed = sum(
        bool(tf.reduce_any(policy(image, tf.constant([s, 7], tf.int64)) != image)) for s in range(n)
    )
    if p == 1.0:
        assert changed > 0.95 * n  # a draw within a degree or two of 0 may leave the image as it was
    else:  # binomial(400, 0.5): sd 10, so +-40 is 4 sd
        assert abs(changed - p * n) < 40, changed


# --- seed 001: Perceiver Medium / Large / XLarge -------------------------------------------------
SEED_001_COUNTS = {"perceiver_medium": 293_362, "perceiver_large": 1_151_730, "perceiver_xlarge": 4_428_262}


@pytest.mark.parametrize("name", list(SEED_001_COUNTS))
def test_perceiver_presets_have_the_seeds_parameter_counts(name):
    from configs.perceiver_small_data import get_config

    model = _abstract(name)
    assert param_count(model) == SEED_001_COUNTS[name]
    size = {"perceiver_medium": "", "perceiver_large": "_large", "perceiver_xlarge": "_xl"}[name]
    assert get_config(f"cifar10{size}").model == name
