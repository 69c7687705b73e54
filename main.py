"""Train a jaxvit model: python main.py --config=configs/default.py --workdir=DIR [--config.key=value]."""

import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxvit.train.config_util import check_overrides, load_config_file

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and TensorBoard events.")
config_flags.DEFINE_config_file("config", None, "Path to a config file (get_config()).", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from jaxvit.train import loop

    result = loop.run(FLAGS.config, FLAGS.workdir)
    if "preempted_step" in result:
        print(f"preempted: checkpoint saved at step {int(result['preempted_step'])}; "
              "run the same command to resume", flush=True)
        return
    print("final eval: " + "  ".join(f"{k}={v:.4f}" for k, v in result.items()), flush=True)


def precheck(argv: list[str]) -> None:
    """Fails fast, naming close matches, on an unknown --config.key (before absl's KeyError)."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return
    try:
        check_overrides(load_config_file(spec), argv)
    except (KeyError, FileNotFoundError) as e:
        sys.exit(f"error: {e.args[0]}")


if __name__ == "__main__":
    precheck(sys.argv)
    logging.set_verbosity(logging.WARNING)  # orbax/absl chatter; jaxvit's own lines stay at INFO
    std_logging.getLogger("jaxvit").setLevel(std_logging.INFO)
    app.run(main)
