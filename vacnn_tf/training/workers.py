"""Spreading a grid of trainings over worker processes: ``--jobs N`` on one machine, ``--shard i/N``
for the job arrays of a cluster scheduler.

There is no scheduler here. Every worker walks the same list of units (pretrainings first, then
the folds) and trains those whose claim it wins (:mod:`vacnn_tf.training.claims`); a fold waits for its
pretraining to be finished by whichever worker holds it. A worker ends when every unit is done
or held by another live worker; one more run of the same command without ``--shard`` (which
``--jobs`` does by itself) finds the units done, finishes what a crashed worker left, and
writes the tables.

``--jobs N`` starts N copies of the command as ``--shard k/N``, each pinned to its share of this
process's cores (``os.sched_setaffinity``; TensorFlow then runs as many threads as its cores,
:func:`vacnn_tf.models.runtime.configure_runtime`) and, where GPUs exist, to one GPU each
(``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence, TypeVar

from vacnn_tf.training.claims import UnitsHeld

if TYPE_CHECKING:
    from vacnn_tf.config import RunConfig
    from vacnn_tf.training.progress import Unit

log = logging.getLogger(__name__)

DEFAULT_POLL = 20.0  # seconds between looks at units other workers hold
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (``--shard 0/4`` ... ``--shard 3/4``).

    Every shard takes whatever unit nobody holds, so the split follows the work; the index names
    the worker in its claims and its log lines.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``i/N`` with 0 <= i < N, e.g. ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--shard takes i/N with integers, 0 <= i < N. Received: {text!r}") from None
        if not 0 <= index < count:
            raise argparse.ArgumentTypeError(f"--shard i/N needs 0 <= i < N. Received: {text!r}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def positive_jobs(text: str) -> int:
    """argparse's ``type`` for ``--jobs``: an integer >= 1."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"--jobs takes a number of worker processes, 1 or more. Received: {text!r}")
    return jobs


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """``--jobs N`` and ``--shard i/N`` (into ``args.jobs`` / ``args.shard``)."""
    parser.add_argument("--jobs", type=positive_jobs, default=None, metavar="N",
                        help="train on N worker processes of this machine, each pinned to its share of the cores "
                             "(or to one GPU each), then write the results (default: the config's train.jobs)")
    parser.add_argument("--shard", type=Shard.parse, default=None, metavar="I/N",
                        help="be worker I of N sharing the output folder (a job array): train the units no other "
                             "worker holds and write no table; the same command without --shard assembles")


def jobs_for(flag: Optional[int], configured: int, sharded: bool) -> int:
    """Worker processes of one command: ``--jobs`` where given; else ``train.jobs``, at most one
    per usable core (and per visible GPU, where there are GPUs); a ``--shard`` worker is one."""
    if flag is not None:
        return flag
    if sharded or configured <= 1:
        return 1
    gpus = visible_gpus()
    return max(1, min(configured, len(usable_cores()), *([len(gpus)] if gpus else [])))


def check_worker_options(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with ``--jobs`` / ``--shard`` / ``--force`` together, or None."""
    if args.shard is not None and (args.jobs or 1) > 1:
        return f"--shard {args.shard} is one worker; --jobs {args.jobs} starts several: give one of them."
    if args.shard is not None and args.force:
        return ("--force with --shard would let each shard delete what the others trained: run the command "
                "once with --force (and --jobs N), or delete the runs first.")
    return None


# --- pinning ---------------------------------------------------------------------------------------

def usable_cores() -> list[int]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def split_cores(cores: Sequence[int], jobs: int) -> list[list[int]]:
    """``cores`` in ``jobs`` contiguous shares, as even as they go (the first ones one larger)."""
    if jobs > len(cores):
        raise ValueError(f"--jobs {jobs} needs a core per worker; this process may use {len(cores)} "
                         f"(os.sched_getaffinity). Received: --jobs {jobs}")
    size, extra = divmod(len(cores), jobs)
    shares, start = [], 0
    for k in range(jobs):
        end = start + size + (1 if k < extra else 0)
        shares.append(list(cores[start:end]))
        start = end
    return shares


def visible_gpus() -> list[str]:
    """The GPU ids a child may be given in ``CUDA_VISIBLE_DEVICES`` (empty: none), as the Keras
    backend the children train with sees them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in (p.strip() for p in listed.split(",")) if g and g != "-1"]
    from vacnn_tf.config import keras_backend

    return [str(k) for k in range(GPU_COUNTERS.get(keras_backend(), _tensorflow_gpus)())]


def _tensorflow_gpus() -> int:
    try:
        import tensorflow as tf
    except ImportError:
        return 0
    return len(tf.config.list_physical_devices("GPU"))


def _jax_gpus() -> int:
    # In a child process: a JAX GPU client in this one would preallocate most of each GPU's
    # memory (XLA_PYTHON_CLIENT_PREALLOCATE) and keep it from the workers for the whole run.
    probe = "import jax\nprint(sum(d.platform == 'gpu' for d in jax.devices()))"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return 0


def _torch_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())  # NVML where it can: no CUDA context in this process


GPU_COUNTERS: dict[str, Callable[[], int]] = {"tensorflow": _tensorflow_gpus, "jax": _jax_gpus, "torch": _torch_gpus}


def worker_placements(jobs: int) -> list[tuple[list[int], Optional[str]]]:
    """Per worker: its cores, and its GPU id where GPUs exist (one each)."""
    gpus = visible_gpus()
    if gpus and jobs > len(gpus):
        raise ValueError(f"--jobs {jobs} gives each worker a GPU; {len(gpus)} are visible "
                         f"({', '.join(gpus)}). Received: --jobs {jobs}")
    cores = split_cores(usable_cores(), jobs)
    return [(cores[k], gpus[k] if gpus else None) for k in range(jobs)]


def _spawn(command: list[str], cores: list[int], gpu: Optional[str]) -> subprocess.Popen[bytes]:
    """Start ``command`` on ``cores`` (and ``gpu``): the child inherits the mask of the thread that forks it."""
    env = dict(os.environ, OMP_NUM_THREADS=str(len(cores)))  # NumPy's and scikit-learn's pools too
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if not hasattr(os, "sched_setaffinity"):
        return subprocess.Popen(command, env=env)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        return subprocess.Popen(command, env=env)
    finally:
        os.sched_setaffinity(0, before)


def run_jobs(command: Callable[[Shard], list[str]], jobs: int) -> list[int]:
    """Run ``command(shard)`` for each of ``jobs`` shards at once, pinned; wait; their exit codes.

    Raises:
        ValueError: more jobs than cores (or than GPUs, where there are GPUs).
    """
    placements = worker_placements(jobs)
    children = []
    for k, (cores, gpu) in enumerate(placements):
        shard = Shard(k, jobs)
        where = f"cores {cores[0]}-{cores[-1]}" + (f", GPU {gpu}" if gpu is not None else "")
        print(f"[workers] starting shard {shard} on {where}", flush=True)
        children.append(_spawn(command(shard), cores, gpu))
    try:
        return [child.wait() for child in children]
    except BaseException:  # interrupted: the workers go too (their claims become free at once)
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
        raise


def pretrain_before_workers(planned: Sequence[tuple["RunConfig", "Unit"]], jobs: int,
                            note: Callable[[str], None] = print) -> list[str]:
    """Train the pretrainings a grid waits for before its workers start, when there are fewer of
    them than workers; each in a child ``vacnn pretrain --resume`` on all the cores, in turn (a
    child, so that this process holds no TensorFlow state while the workers run).

    Left to the workers, a lone pretraining runs on one worker's share of the cores while the
    others wait for it: on a 2-core machine a VACNN pretraining epoch on TESS + RAVDESS takes
    about 2.4 times as long on one core (docs/reproducing.md). As many pretrainings as workers, or
    more (a table's architectures, RAVDESS folds under ``speaker``), keep every worker busy and
    stay with them. A pretraining that holds speakers out stays with the workers too: the
    ``pretrain`` command has no way to name them. A child that fails leaves its pretraining to
    the workers, which meet the same error and report it. Returns the run directories it trained.

    Args:
        planned: Each unit of the grid with the configuration that runs it
            (:func:`vacnn_tf.training.progress.plan_finetune` and ``plan_pretrain``).
        jobs: How many workers will start.
        note: Where the progress lines go.
    """
    import tempfile
    from pathlib import Path

    from vacnn_tf.config import to_yaml

    pending: dict[str, tuple["RunConfig", "Unit"]] = {}
    for config, unit in planned:
        if unit.pretraining and not unit.done:
            pending.setdefault(unit.key, (config, unit))
    if not pending or len(pending) >= jobs:
        return []
    trained = []
    for key, (config, unit) in pending.items():
        if unit.exclude:
            continue
        note(f"[workers] {unit.label}: in one process on all the cores, before the workers start")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(to_yaml(config))
            done = subprocess.run(python_command("vacnn_tf", ["pretrain", "--config", str(path), "--resume"]))
        if done.returncode:
            note(f"[workers] {unit.label} ended with exit code {done.returncode}; the workers take it up")
        else:
            trained.append(key)
    return trained


def child_argv(argv: Sequence[str], shard: Shard, extra: Sequence[str] = ()) -> list[str]:
    """``argv`` for one worker: ``--force`` dropped (the parent cleared the runs), then ``extra``,
    ``--jobs 1 --shard K/N`` last, so that they win over what ``argv`` says."""
    return [a for a in argv if a != "--force"] + list(extra) + ["--jobs", "1", "--shard", str(shard)]


def without_shard(argv: Sequence[str]) -> list[str]:
    """``argv`` less its ``--shard I/N`` (and any ``--jobs``): the command that assembles."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--shard", "--jobs"):
            skip = True
        elif not arg.startswith(("--shard=", "--jobs=")):
            out.append(arg)
    return out


def python_command(module: str, argv: Sequence[str]) -> list[str]:
    """``python -m MODULE ARGV`` with this interpreter."""
    return [sys.executable, "-m", module, *argv]


# --- working until the units are done -------------------------------------------------------------

def until_done(step: Callable[[], T], *, shard: Optional[Shard], poll: Optional[float] = None,
               sleep: Callable[[float], None] = time.sleep, note: Callable[[str], None] = print) -> Optional[T]:
    """Call ``step`` until it returns; it raises :class:`UnitsHeld` while work is held elsewhere.

    A shard stops (returns None) when everything left is in other workers' hands; any other
    worker (the one that writes the tables) waits for them and returns ``step``'s result.
    ``poll``: seconds between passes while waiting (default :data:`DEFAULT_POLL`).
    """
    poll = DEFAULT_POLL if poll is None else poll
    said = False
    while True:
        try:
            return step()
        except UnitsHeld as held:
            if shard is not None and not held.waiting:
                note(f"shard {shard}: the {len(held.keys)} unit(s) left are held by other workers; this shard is done")
                return None
            if not said:
                note(f"waiting for {len(held.keys)} unit(s) other workers hold (looking again every {poll:.0f}s)")
                said = True
            sleep(poll)
