"""Split expressions in tfds's grammar, for sources that list their examples in memory.

``'train'``, ``'train[:90%]'``, ``'test[10%:]'``, ``'train[-500:]'``, ``'train+val'``:
a split name, optionally sliced by example counts or percents (both ends in the same
unit; percents round to the closest example, as tfds's default ``rounding='closest'``),
and parts joined by ``+``. tfds sources hand the expression to tfds itself; the digits,
image-folder and official-layout sources resolve it here, so one config string means
the same on either side.
"""

from __future__ import annotations

import re

from jaxvit.errors import DataError

_PART = re.compile(r"^(?P<name>[\w-]+)(?:\[(?P<lo>-?\d+)?(?P<lo_pct>%)?:(?P<hi>-?\d+)?(?P<hi_pct>%)?\])?$")


def unknown_split(dataset: str, expr: str, have, why: str = "") -> DataError:
    """The one error for a split a dataset does not have (or a slice it cannot give)."""
    because = f" ({why})" if why else ""
    return DataError(
        f"dataset {dataset!r} has no split {expr!r}{because}; it has {sorted(have)}; set "
        "--config.train_split / --config.eval_split to one of those, sliced ('train[:90%]') "
        "or joined ('train+val') as tfds writes them"
    )


def resolve(dataset: str, expr: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """``expr`` as (split, start, stop) ranges over the named splits of ``sizes``."""
    ranges = []
    for part in str(expr).replace(" ", "").split("+"):
        m = _PART.match(part)
        if m is None:
            raise unknown_split(dataset, expr, sizes, f"{part!r} is not NAME or NAME[a:b] / NAME[a%:b%]")
        name = m["name"]
        if name not in sizes:
            raise unknown_split(dataset, expr, sizes)
        n = sizes[name]
        if m["lo"] is not None and m["hi"] is not None and bool(m["lo_pct"]) != bool(m["hi_pct"]):
            raise unknown_split(dataset, expr, sizes, f"{part!r} mixes percents and counts")
        pct = bool(m["lo_pct"] or m["hi_pct"])
        bounds = []
        for value, default in ((m["lo"], 0), (m["hi"], n)):
            if value is None:
                bounds.append(default)
                continue
            v = int(value)
            if abs(v) > (100 if pct else n):
                why = f"{part!r} reaches past the {n} examples of {name!r}"
                raise unknown_split(dataset, expr, sizes, why)
            if pct:
                v = int(round(v * n / 100.0))
            bounds.append(n + v if v < 0 else v)
        ranges.append((name, bounds[0], max(bounds[0], bounds[1])))
    return ranges


def size(dataset: str, expr: str, sizes: dict[str, int]) -> int:
    return sum(hi - lo for _, lo, hi in resolve(dataset, expr, sizes))
