"""Which of timm's names in the families jaxvit carries are registered here, per timm module.

    python -m convert.coverage            # the Markdown table the README shows
    python -m convert.coverage --missing  # and every name still missing

The counts come from ``timm.list_models(module=...)`` and jaxvit's registry, so they cannot
drift from either; tests/models/test_models.py checks that the README holds this table.
"""

from __future__ import annotations

import argparse

import jaxvit
from jaxvit.registry import split_name

# timm's modules for the families jaxvit carries
MODULES = ("vision_transformer", "deit", "mlp_mixer", "swin_transformer", "tnt", "mvitv2", "inception_v4")
BEGIN, END = "<!-- coverage: python -m convert.coverage -->", "<!-- /coverage -->"


def coverage() -> dict[str, tuple[list[str], list[str]]]:
    """Per timm module: (its names jaxvit registers, its names jaxvit lacks)."""
    import timm

    ours = {split_name(n)[0] for n in jaxvit.list_models()}
    out = {}
    for module in MODULES:
        theirs = timm.list_models(module=module)
        out[module] = ([n for n in theirs if n in ours], [n for n in theirs if n not in ours])
    return out


def table(cov: dict[str, tuple[list[str], list[str]]]) -> str:
    rows = ["| timm module | timm names | in jaxvit |", "|---|---:|---:|"]
    for module, (have, lack) in cov.items():
        rows.append(f"| `{module}` | {len(have) + len(lack)} | {len(have)} |")
    have = sum(len(h) for h, _ in cov.values())
    total = sum(len(h) + len(m) for h, m in cov.values())
    rows.append(f"| all | {total} | {have} ({100 * have / total:.0f}%) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--missing", action="store_true", help="also list every timm name jaxvit lacks")
    args = parser.parse_args(argv)
    cov = coverage()
    print(table(cov))
    if args.missing:
        for module, (_, lack) in cov.items():
            if lack:
                print(f"\n{module} ({len(lack)} missing): {', '.join(lack)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
