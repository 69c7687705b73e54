"""TensorBoard event files written without TensorFlow, read back by TensorBoard itself."""

import subprocess
import sys

import pytest
from conftest import ROOT

from jaxvit.train.metrics import MetricWriter, crc32c


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C (Castagnoli) check value
    assert crc32c(b"") == 0


def test_tensorboard_reads_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = MetricWriter(str(tmp_path), enabled=True)
    for step in (1, 2, 10):
        writer.write(step, {"train_loss": 1.0 / step, "eval_top1": 0.25 * step})
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"train_loss", "eval_top1"}
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2, 10]
    assert [e.value for e in acc.Scalars("train_loss")] == pytest.approx([1.0, 0.5, 0.1])  # float32
    assert [e.value for e in acc.Scalars("eval_top1")] == [0.25, 0.5, 2.5]


def test_writing_events_needs_no_tensorflow(tmp_path):
    """GPU hosts often have no TensorFlow: the trainer's metrics must not import it."""
    code = (
        "import sys; from jaxvit.train.metrics import MetricWriter; "
        f"w = MetricWriter({str(tmp_path)!r}, enabled=True); w.write(1, {{'loss': 1.0}}); w.close(); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
    assert list(tmp_path.glob("events.out.tfevents.*"))
