"""Model registry keyed by timm's model names.

A name may carry a pretrained tag (``mixer_b16_224.miil_in21k``) which selects
nothing here but is accepted so timm commands can be pasted unchanged; legacy
aliases (``mixer_b16_224_in21k``) map to ``name.tag``.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jaxvit.errors import ConfigError

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
IMAGENET_INCEPTION_MEAN = (0.5, 0.5, 0.5)
IMAGENET_INCEPTION_STD = (0.5, 0.5, 0.5)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., Any]
    family: str
    # Preprocessing the pretrained weights expect, as in timm's default cfg.
    default_cfg: dict = field(default_factory=dict)


_MODELS: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    family: str, default_cfg: dict | None = None, aliases: dict[str, str] | None = None, name: str | None = None
) -> Callable:
    """Registers ``fn`` under ``name`` (default: its function name); ``aliases`` maps old names
    to ``name.tag``."""

    def wrap(fn: Callable) -> Callable:
        cfg = dict(
            input_size=(224, 224, 3),
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
            crop_pct=0.9,
            interpolation="bicubic",
        )
        cfg.update(default_cfg or {})
        _MODELS[name or fn.__name__] = ModelEntry(name or fn.__name__, fn, family, cfg)
        for alias, target in (aliases or {}).items():
            _ALIASES[alias] = target
        return fn

    return wrap


def build(cls: type, defaults: dict, kwargs: dict) -> Any:
    """``cls(**{**defaults, **kwargs})`` with rngs from ``seed``: the body of every model fn."""
    from flax import nnx

    args = {**defaults, **kwargs}
    seed = args.pop("seed", 0)
    rngs = args.pop("rngs", None) or nnx.Rngs(params=seed, dropout=seed + 1)
    return cls(**args, rngs=rngs)


def split_name(name: str) -> tuple[str, str]:
    """Resolves aliases and returns (architecture, pretrained tag)."""
    name = _ALIASES.get(name, name)
    arch, _, tag = name.partition(".")
    return arch, tag


def get_entry(name: str) -> ModelEntry:
    arch, _ = split_name(name)
    if arch not in _MODELS:
        words = sorted({n.split("_")[0] for n in _MODELS})
        word = arch.split("_")[0]
        if not difflib.get_close_matches(word, words, n=1, cutoff=0.75):  # not a typo: another architecture
            raise ConfigError(
                f"unknown model {name!r}: jaxvit does not carry this architecture (its names start with "
                f"{', '.join(w + '_' for w in words)}); use timm itself for it"
            )
        close = difflib.get_close_matches(arch, list(_MODELS) + list(_ALIASES), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}{hint} (jaxvit.list_models() lists all {len(_MODELS)} names)"
        )
    return _MODELS[arch]


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Sorted registered names matching a shell-style ``pattern`` (as ``timm.list_models``)."""
    return sorted(
        n
        for n, e in _MODELS.items()
        if fnmatch.fnmatch(n, pattern) and (family is None or e.family == family)
    )


def parse_model_args(text: str) -> dict:
    """'depth=2,embed_dim=32,depths=(2,2,8,2)' -> keywords (values are Python literals)."""
    if not text.strip():
        return {}
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if call.args:
            raise SyntaxError("positional value")
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise ConfigError(
            f"config.model_args {text!r} is not a list of key=literal (e.g. 'depth=2,embed_dim=32'): {e}"
        ) from None
