"""Train a jaxvit model: python main.py --config=configs/default.py --workdir=DIR [--config.key=value]."""

import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxvit.train.config_util import check_overrides, load_config_file

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and TensorBoard events.")
config_flags.DEFINE_config_file("config", None, "Path to a config file (get_config()).", lock_config=True)
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "jax.distributed: 'auto' initializes on TPU VMs, under SLURM with several tasks, "
                  "or when --coordinator_address is given.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host without TPU/SLURM).")
flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes-1.")
flags.mark_flags_as_required(["config", "workdir"])


def init_distributed() -> None:
    """JAX's own multi-host runtime; TPU VMs and SLURM are detected by jax itself."""
    import jax

    explicit = FLAGS.coordinator_address is not None
    cluster = "TPU_WORKER_HOSTNAMES" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if FLAGS.distributed == "off" or (FLAGS.distributed == "auto" and not (explicit or cluster)):
        return
    if explicit:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    else:
        jax.distributed.initialize()


def train(config, workdir: str) -> int:
    """Trains (or evaluates) and prints the final line; returns the exit status: 0, or 2 for
    the user's mistake (one ``error:`` line; anything else keeps its traceback)."""
    from jaxvit.errors import UserError, report
    from jaxvit.train import loop

    try:
        result = loop.run(config, workdir)
    except UserError as e:
        return report(e)
    if isinstance(result, loop.Preempted):
        print(f"preempted: checkpoint saved at step {result.step}; run the same command to resume", flush=True)
        return 0
    # the last eval, then the best one kept in WORKDIR/best (best_step, best_eval_top1 or best_eval_ema_top1)
    print("final eval: " + "  ".join(f"{k}={int(v)}" if k == "best_step" else f"{k}={v:.4f}"
                                     for k, v in result.items()), flush=True)
    return 0


def main(argv):
    del argv
    init_distributed()
    status = train(FLAGS.config, FLAGS.workdir)
    if status:
        sys.exit(status)


def precheck(argv: list[str]) -> None:
    """Fails fast, naming close matches, on an unknown --config.key (before absl's KeyError)."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return
    try:
        check_overrides(load_config_file(spec), argv)
    except (KeyError, FileNotFoundError, ValueError) as e:  # a bad file, variant or key: the user's
        from jaxvit.errors import report

        sys.exit(report(e))


if __name__ == "__main__":
    precheck(sys.argv)
    from jaxvit.train.host_memory import keep_freed_memory

    keep_freed_memory()  # before JAX's CPU client starts its threads: no page faults every step on a CPU
    logging.set_verbosity(logging.WARNING)  # orbax/absl chatter; jaxvit's own lines stay at INFO
    std_logging.getLogger("jaxvit").setLevel(std_logging.INFO)
    app.run(main)
