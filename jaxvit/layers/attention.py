"""Multi-head self-attention with timm's parameter layout (fused ``qkv``, ``proj``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers import remat
from jaxvit.layers.common import Dtype, TraceSetting, dropout, linear, make_norm

# Which kernel runs attention: 'auto' (cuDNN's fused kernel on GPU in bf16/fp16, 'head_major' on
# CPU, XLA's elsewhere), 'xla' (jax.nn.dot_product_attention's XLA path), 'cudnn' (forced; narrow
# heads padded to HEAD_MULTIPLE; fails where cuDNN still refuses the shapes), 'xla_padded' (XLA on
# the padded, length-masked tensors cuDNN gets: the padding path, testable on CPU), 'head_major'
# (XLA's arithmetic with the heads moved ahead of the tokens before the products; on XLA:CPU the
# products then run as plain batched matmuls: vit_small's fp32 train step 10.1 -> 8.7 s at batch
# 32 on the 2-core test machine, README).
IMPLEMENTATIONS = ("auto", "xla", "cudnn", "xla_padded", "head_major")
# cuDNN's fused kernel refuses odd lengths (ViT's 197 tokens); q and k/v are padded to a multiple of
# this and the padding masked by sequence lengths (ViT-B/16 at 224 px: 197 -> 256, which ran on an
# H100 at 3141 img/s train vs 2315 with XLA attention, README "One H100").
PAD_MULTIPLE = 64
# cuDNN's fused kernel also takes only head widths that are multiples of 8: narrower heads (TnT-S's
# inner heads are 6 wide) get zero columns, which leave the scores as they are (the scale stays
# the true width's), and the output's extra columns are dropped. Only a forced 'cudnn' (and
# 'xla_padded') pads them: 'auto' leaves such heads to XLA, as before, until a GPU run shows that
# the wider, longer fused call beats XLA there (TnT-S's inner attention: 16 tokens padded to 64).
HEAD_MULTIPLE = 8

log = logging.getLogger("jaxvit")
Cut = Callable[[jax.Array], jax.Array]  # a kernel's output -> attention's result (its padding dropped)
_setting = TraceSetting("attention implementation", IMPLEMENTATIONS, "auto")
_fallback_logged = False
# set_implementation(name): the kernel for models traced from now on (``config.attention``);
# ``with implementation('xla'): ...``: the kernel for what is traced inside
set_implementation, get_implementation, implementation = _setting.set, _setting.get, _setting.using


_pad_multiple = PAD_MULTIPLE


def set_pad_multiple(n: int) -> None:
    """The multiple the 'cudnn' and 'xla_padded' paths pad token counts to, for models traced from
    now on (PAD_MULTIPLE by default). jax's cuDNN path itself asks only that biased attention
    have even lengths when training; ``bench.py --pad-multiple`` times other multiples on a GPU."""
    global _pad_multiple
    if n < 1:
        raise ConfigError(f"attention pad multiple {n} must be at least 1")
    _pad_multiple = n


@contextlib.contextmanager
def pad_multiple(n: int):
    """``with pad_multiple(n): ...``: ``set_pad_multiple(n)`` for what is traced inside."""
    old = _pad_multiple
    set_pad_multiple(n)
    try:
        yield
    finally:
        set_pad_multiple(old)


def _round_up(n: int) -> int:
    return -(-n // _pad_multiple) * _pad_multiple


def _pad_axis(x: jax.Array, axis: int, size: int, value=0) -> jax.Array:
    """Pads ``axis`` to ``size``; a broadcast (size-1) axis stays as it is."""
    if x.shape[axis] in (1, size):
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths, constant_values=value)


def _one_width(q, k, v) -> tuple[jax.Array, jax.Array, jax.Array, float | None]:
    """q, k, v with one head width, and the scale q's own width asks for (None: unchanged).

    jax's kernels take one head width; differential attention's v heads are twice as wide as
    its q and k heads. Zero columns added to q and k leave the scores as they are; added to v,
    they are output columns the caller drops.
    """
    dq, dv = q.shape[-1], v.shape[-1]
    if dq == dv:
        return q, k, v, None
    width = max(dq, dv)
    q, k, v = (_widen(t, width) for t in (q, k, v))
    return q, k, v, dq**-0.5


def _widen(t: jax.Array, width: int) -> jax.Array:
    """``t`` with zero columns added on its last axis up to ``width``."""
    return jnp.pad(t, [(0, 0)] * (t.ndim - 1) + [(0, width - t.shape[-1])])


def _padded(q, k, v, bias, mask, implementation: str, scale: float | None = None) -> jax.Array:
    """Attention on q, k, v padded to PAD_MULTIPLE tokens and HEAD_MULTIPLE head widths; the
    padded keys are masked through ``key_value_seq_lengths``, and the padded query rows and
    output columns are dropped, so the result is the unpadded one."""
    out, cut = _padded_uncut(q, k, v, bias, mask, implementation, scale)
    return cut(out)


def _padded_uncut(q, k, v, bias, mask, implementation: str, scale: float | None = None) -> tuple[jax.Array, Cut]:
    """``_padded`` as (the kernel's padded output, the cut that drops the padding)."""
    b, tq = q.shape[:2]
    tk = k.shape[1]
    width = q.shape[-1]
    if width % HEAD_MULTIPLE:
        scale = width**-0.5 if scale is None else scale
        padded_width = -(-width // HEAD_MULTIPLE) * HEAD_MULTIPLE
        q, k, v = (_widen(t, padded_width) for t in (q, k, v))
    pq, pk = _round_up(tq), _round_up(tk)
    if bias is not None:
        bias = _pad_axis(_pad_axis(bias, -2, pq), -1, pk)
    if mask is not None:
        mask = _pad_axis(_pad_axis(mask, -2, pq, True), -1, pk, True)
    out = jax.nn.dot_product_attention(
        _pad_axis(q, 1, pq), _pad_axis(k, 1, pk), _pad_axis(v, 1, pk), bias=bias, mask=mask,
        scale=scale,
        query_seq_lengths=jnp.full((b,), tq, jnp.int32),
        key_value_seq_lengths=jnp.full((b,), tk, jnp.int32),
        implementation=implementation,
    )
    return out, lambda o: o[:, :tq, :, :width]


def _head_major(q, k, v, bias, mask, scale: float | None) -> jax.Array:
    """XLA attention with the heads moved ahead of the tokens, (B, heads, T, head_dim), before the
    two products: the products are then plain batched matmuls over (B, heads). The arithmetic
    is jax.nn.dot_product_attention's (logits in at least fp32, scaled after the product, the
    mask's large negative, softmax in fp32); only the layout the products see differs."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
    logits = jnp.einsum("bnth,bnsh->bnts", q, k, preferred_element_type=jnp.promote_types(q.dtype, jnp.float32))
    logits = logits * jnp.asarray(scale, logits.dtype)
    if bias is not None:
        logits = (logits + bias).astype(logits.dtype)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.asarray(-0.7 * float(jnp.finfo(logits.dtype).max), logits.dtype))
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(k.dtype)
    return jnp.swapaxes(jnp.einsum("bnts,bnsh->bnth", probs, v), 1, 2)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    attn_drop: nnx.Dropout | None = None,
) -> jax.Array:
    """Scaled dot-product attention on (B, T, heads, head_dim) tensors; every family's attention
    (ViT/DeiT, TnT inner and outer, Perceiver cross and self, Swin windows with relative-position
    bias and shift mask, MViTv2 pooled with relative positions) comes here.

    The kernel follows ``set_implementation`` (``config.attention``). Active attention dropout
    forms the weights explicitly (no fused kernel offers dropout). v's heads may be wider or
    narrower than q's and k's (differential attention's are twice as wide).
    """
    out, cut = attention_uncut(q, k, v, bias=bias, mask=mask, attn_drop=attn_drop)
    return cut(out)


def attention_uncut(q: jax.Array, k: jax.Array, v: jax.Array, *, bias: jax.Array | None = None,
                    mask: jax.Array | None = None, attn_drop: nnx.Dropout | None = None) -> tuple[jax.Array, Cut]:
    """``attention`` as (the kernel's own output, the cut that makes it ``attention``'s result).
    The fused kernel's output is padded (tokens to the pad multiple, head widths to
    HEAD_MULTIPLE), and the kernel keeps it for its own gradient. A caller whose next product
    needs the result for its gradient (``Attention``'s proj under remat='elementwise', through
    ``remat.chain``) keeps that same array rather than a cut copy, and cuts it again in the
    backward pass."""
    if not (attn_drop is None or attn_drop.rate == 0.0 or attn_drop.deterministic):
        scale = q.shape[-1] ** -0.5
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * scale, k)
        if bias is not None:
            logits = logits + bias
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)
        return jnp.einsum("bhqk,bkhd->bqhd", attn_drop(weights), v), _uncut
    width = v.shape[-1]
    q, k, v, scale = _one_width(q, k, v)
    out, cut = _kernel(q, k, v, bias, mask, scale)
    if v.shape[-1] == width:  # v not widened by _one_width
        return out, cut
    return out, lambda o: cut(o)[..., :width]


def _uncut(out: jax.Array) -> jax.Array:
    return out


def _kernel(q, k, v, bias, mask, scale: float | None) -> tuple[jax.Array, Cut]:
    """The kernel ``set_implementation`` picks, on q, k, v of one head width: (its output, the
    cut to the unpadded result)."""
    global _fallback_logged
    impl = _setting.get()
    if impl == "xla":
        return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, implementation="xla"), _uncut
    if impl == "head_major":
        return _head_major(q, k, v, bias, mask, scale), _uncut
    if impl == "xla_padded":
        return _padded_uncut(q, k, v, bias, mask, "xla", scale)
    if impl == "cudnn":
        return _padded_uncut(q, k, v, bias, mask, "cudnn", scale)
    # auto: the fused kernel where it exists (GPU, half precision), head-major on CPU, else XLA
    backend = jax.default_backend()
    if backend == "cpu":
        return _head_major(q, k, v, bias, mask, scale), _uncut
    if backend == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] % HEAD_MULTIPLE == 0:
        try:
            return _padded_uncut(q, k, v, bias, mask, "cudnn", scale)
        except Exception as e:  # cuDNN refused these shapes at trace time: XLA computes the same
            if not _fallback_logged:
                log.warning("attention: cuDNN refused %s x %s (%s); using XLA's attention",
                            q.shape, k.shape, str(e).splitlines()[0][:160])
                _fallback_logged = True
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale), _uncut


class Attention(nnx.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ConfigError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = linear(dim, dim * 3, bias=qkv_bias, dtype=dtype, rngs=rngs)
        # qk_norm: a LayerNorm over each head's query and key (timm's q_norm / k_norm)
        head_dim = dim // num_heads
        norm = partial(make_norm, norm_layer, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.q_norm = norm(head_dim) if qk_norm else None
        self.k_norm = norm(head_dim) if qk_norm else None
        # scale_norm: a LayerNorm on the heads' output before proj (timm's norm; BEiT-3)
        self.norm = norm(dim) if scale_norm else None
        self.attn_drop = dropout(attn_drop, rngs)
        self.proj = linear(dim, dim, bias=proj_bias, dtype=dtype, rngs=rngs)
        self.proj_drop = dropout(proj_drop, rngs)

    def __call__(self, x: jax.Array, *, bias: jax.Array | None = None, mask=None, pre_norm=None) -> jax.Array:
        """``pre_norm``: the block's norm before attention (or a tuple: the norm and what follows
        it before qkv), given here rather than applied by the caller so that
        ``remat='elementwise'`` can recompute its output (``remat.chain``)."""
        qkv = remat.chain(x, pre_norm, self.qkv)
        # (B, N, C) tokens, or (B, N, G, C): G groups of N tokens each per image (Swin's windows,
        # ``windows_last``), attended within their group: the groups join the heads' axis,
        # G * heads heads of N tokens, group-major, so a (1, G * heads, N, N) bias broadcasts
        # over the images.
        b, n, *groups, c = *qkv.shape[:-1], qkv.shape[-1] // 3
        head_dim = c // self.num_heads
        qkv = qkv.reshape(b, n, -1, 3, self.num_heads, head_dim)
        q, k, v = (qkv[:, :, :, i].reshape(b, n, -1, head_dim) for i in range(3))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        out, cut = attention_uncut(q, k, v, bias=bias, mask=mask, attn_drop=self.attn_drop)

        def merge_heads(o):
            return cut(o).reshape(b, n, *groups, c)

        # under remat='elementwise' proj's gradient keeps the kernel's own output, not a cut copy
        return self.proj_drop(remat.chain(out, merge_heads, self.norm, self.proj))
