"""Metrics to TensorBoard event files, ``metrics.jsonl`` and the console (process 0 only).

The event files are written here, without TensorFlow (GPU hosts often have none, and the
trainer needs none where no tf.data runs): TFRecord framing (length, masked CRC-32C) around
``Event`` protos whose few fields are encoded by hand; each scalar is a ``simple_value``,
which TensorBoard shows under Scalars.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import jax
import numpy as np


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings and messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int = 0, *, file_version: str = "", scalars: dict | None = None) -> bytes:
    """tensorflow.Event: wall_time (1, double), step (2, int64), file_version (3), summary (5)."""
    out = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)
    if file_version:
        out += _field(3, file_version.encode())
    if scalars:
        values = b"".join(
            # Summary.Value: tag (1, string), simple_value (2, float)
            _field(1, _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value))
            for tag, value in scalars.items()
        )
        out += _field(5, values)
    return out


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data))


class EventFile:
    """A TensorBoard event file in ``directory`` (``events.out.tfevents.<time>.<host>.<pid>``)."""

    def __init__(self, directory: str):
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.jaxvit"
        self._f = open(os.path.join(directory, name), "ab")
        self._f.write(_record(_event(now, file_version="brain.Event:2")))
        self._f.flush()

    def scalars(self, step: int, scalars: dict[str, float]) -> None:
        self._f.write(_record(_event(time.time(), step, scalars=scalars)))
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if not self.enabled:
            return
        self._tb = EventFile(workdir)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
        self._tb.scalars(step, scalars)
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._jsonl.close()
