"""Checks ``--config.key=value`` overrides before absl sees them, so typos name close matches."""

from __future__ import annotations

import difflib
import importlib.util
import os

import ml_collections


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path.py`` or ``path.py:arg`` the way ml_collections' config_flags does."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (try --config=configs/default.py)")
    mod_spec = importlib.util.spec_from_file_location("_jaxvit_config", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys += all_keys(v, prefix + k + ".")
    return keys


def check_overrides(config: ml_collections.ConfigDict, argv: list[str], flag: str = "config") -> None:
    """Raises on any ``--config.<key>`` that ``config`` lacks, listing the close matches."""
    known = all_keys(config)
    for arg in argv:
        if not arg.startswith(f"--{flag}."):
            continue
        key = arg[len(flag) + 3 :].split("=", 1)[0]
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown config key {key!r}{hint}")
