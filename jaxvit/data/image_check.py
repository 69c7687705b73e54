"""Finds image files that tf.data could not decode, before training starts.

A broken file in an image folder otherwise stops a run mid-epoch inside tf.data
(``Invalid PNG data, size 100``) without naming the file. Decoding every image up
front would cost as much as an epoch, so each file gets a structural check that
reads at most its first and last few KiB: readable, not empty, the magic bytes
of a format TensorFlow decodes, and the end marker or declared sizes consistent
with the file's length (PNG's IHDR and IEND chunks, JPEG's segment lengths and
end-of-image marker, GIF's trailer, BMP's file and pixel-array sizes). Nearly
every damaged file in practice is a cut-off copy, and that is what these catch.

A file that fails the structural check is then decoded by TensorFlow, the decoder
tf.data uses: only a file TensorFlow cannot decode either is reported, so a JPEG
with data after its end marker (a phone's motion photo) or a BMP with an odd header
costs one decode and is not reported. Files pass through a thread pool, since on a
network or cold disk the reads wait on I/O.

Results are not cached between runs: 50,000 files take about a second, warm or evicted
from the page cache (benchmarks/bench_image_check.py), and a cache keyed by (path, size,
mtime) would still stat every file, and would need a writable place other than the data
folder (often read-only) and the workdir (not created until the check has passed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

HEAD = 4096  # bytes read from the start of each file (magic, PNG IHDR, JPEG segments, BMP header)
TAIL = 1024  # bytes read from the end (end markers, allowing some trailing padding)
CHUNK = 256  # files per thread-pool task: fewer futures, less Python overhead

_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field


def _png(head: bytes, tail: bytes, size: int) -> str | None:
    if size < 57 or head[12:16] != b"IHDR":  # signature + IHDR + smallest IDAT + IEND
        return f"PNG without its IHDR header chunk, {size} bytes"
    if _PNG_IEND not in tail:
        return f"PNG cut short: no IEND end chunk, {size} bytes"
    return None


def _jpeg(head: bytes, tail: bytes, size: int) -> str | None:
    pos = 2  # after SOI; walk the segments up to the first scan (SOS) as far as HEAD reaches
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return f"corrupt JPEG: no marker at byte {pos} of {size}"
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_STANDALONE:
            pos += 2
        elif marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        elif marker == 0xD9:
            return f"JPEG that ends before its image data, {size} bytes"
        else:
            pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
            if pos > size:
                return f"JPEG cut short: a segment runs past the end, {size} bytes"
    if pos + 4 > size:
        return f"JPEG cut short: no image data, {size} bytes"
    if b"\xff\xd9" not in tail:
        return f"JPEG cut short: no end-of-image marker, {size} bytes"
    return None


def _gif(head: bytes, tail: bytes, size: int) -> str | None:
    if size < 14 or not tail.rstrip(b"\x00").endswith(b";"):
        return f"GIF cut short: no trailer, {size} bytes"
    return None


def _bmp(head: bytes, tail: bytes, size: int) -> str | None:
    if size < 30:
        return f"BMP cut short: no full header, {size} bytes"
    declared = int.from_bytes(head[2:6], "little")
    offset = int.from_bytes(head[10:14], "little")
    if declared > size or offset >= size:
        return f"BMP cut short: declares {max(declared, offset)} bytes, has {size}"
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = int.from_bytes(head[22:26], "little", signed=True)
    bits = int.from_bytes(head[28:30], "little")
    # TensorFlow's decoder wants exactly header + rows (each padded to 4 bytes): no more, no less
    needed = offset + (bits * abs(width) + 31) // 32 * 4 * abs(height)
    if needed != size:
        return f"BMP whose header and pixels make {needed} bytes, the file {size}"
    return None


def _structure(head: bytes, tail: bytes, size: int) -> str | None:
    """Why the bytes cannot be a whole PNG, JPEG, GIF or BMP file, or None if they can."""
    if head.startswith(_PNG):
        return _png(head, tail, size)
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg(head, tail, size)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _gif(head, tail, size)
    if head.startswith(b"BM"):
        return _bmp(head, tail, size)
    return f"not a PNG, JPEG, GIF or BMP file: starts with {head[:8]!r}"


def structural_problem(path: str) -> tuple[str | None, bool]:
    """(why the file is not a whole image, or None; whether a decoder could still try it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return f"unreadable: {e.strerror}", False
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return "empty file", False
        head = os.pread(fd, HEAD, 0)
        tail = head[-TAIL:] if size <= HEAD else os.pread(fd, TAIL, size - TAIL)
    except OSError as e:
        return f"unreadable: {e.strerror}", False
    finally:
        os.close(fd)
    return _structure(head, tail, size), True


def decode(tf, contents):
    """The decode tf.data applies to a file's bytes (shared so the check asks the same decoder)."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def _decodes(tf, path: str) -> bool:
    try:
        decode(tf, tf.io.read_file(path))
        return True
    except (tf.errors.OpError, ValueError):
        return False


def find_bad_images(paths: Iterable[str], threads: int = 16) -> dict[str, str]:
    """{path: reason} for the files tf.data could not decode, in ``paths`` order."""
    paths = list(paths)
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]

    def check(chunk):
        return [(p, *structural_problem(p)) for p in chunk]

    with ThreadPoolExecutor(max(1, min(threads, len(chunks)))) as pool:
        suspects = [r for rows in pool.map(check, chunks) for r in rows if r[1] is not None]
    if not suspects:
        return {}
    from jaxvit.data.tf_util import import_tf

    tf = import_tf()
    bad = {}
    for path, reason, decodable in suspects:  # few in practice: decoded one at a time
        if not (decodable and _decodes(tf, path)):
            bad[path] = reason
    return bad
