"""Start-up cost of the image-folder check (jaxvit/data/image_check.py) on a generated folder.

python benchmarks/bench_image_check.py --files 50000

Writes ``--files`` random 32x32 images (half PNG, half JPEG, 10 classes) under a temporary
folder, times listing the folder, the check with the files in the page cache ("warm") and
after evicting them (posix_fadvise DONTNEED on these files only: "cold" reads from disk),
then deletes the folder. ``--keep DIR`` writes to DIR and keeps it.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np


def write_folder(root: str, n: int, classes: int = 10) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(n):
        folder = os.path.join(root, "train", f"class{k % classes}")
        os.makedirs(folder, exist_ok=True)
        image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        fmt = ("PNG", "png") if k % 2 == 0 else ("JPEG", "jpg")
        image.save(os.path.join(folder, f"{k:07d}.{fmt[1]}"), format=fmt[0])


def evict(paths: list[str]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--threads", default="1,16", help="thread-pool sizes to time")
    parser.add_argument("--keep", default="", help="write the folder here and keep it")
    args = parser.parse_args()

    from jaxvit.data import sources
    from jaxvit.data.image_check import find_bad_images

    root = args.keep or tempfile.mkdtemp(prefix="jaxvit_image_check_")
    try:
        t = time.perf_counter()
        write_folder(root, args.files)
        print(f"wrote {args.files} files in {time.perf_counter() - t:.1f} s under {root}")
        t = time.perf_counter()
        files, _, _ = sources._list_class_dir(os.path.join(root, "train"), collections.Counter())
        print(f"listing: {time.perf_counter() - t:.2f} s")
        for threads in map(int, args.threads.split(",")):
            for state in ("warm", "cold"):
                if state == "cold":
                    os.sync()
                    evict(files)
                t = time.perf_counter()
                bad = find_bad_images(files, threads=threads)
                dt = time.perf_counter() - t
                print(f"check, {state}, {threads} threads: {dt:.2f} s ({dt / len(files) * 1e6:.0f} us/file), "
                      f"{len(bad)} bad")
    finally:
        if not args.keep:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
