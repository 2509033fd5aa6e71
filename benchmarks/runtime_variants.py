"""Training / inference speed of runtime settings, interleaved, optionally beside the PyTorch anchor.

Usage (from the repository root)::

    .venv/bin/python benchmarks/runtime_variants.py --rounds 3 \
        --variant "spe1=train.steps_per_execution=1" --variant "spe4=train.steps_per_execution=4" \
        --variant "bf16=train.precision=mixed_bfloat16" \
        --anchor "TORCH_ENV/bin/python ANCHOR"

A variant is ``NAME=KEY=VALUE[,KEY=VALUE...]`` (config overrides; ``NAME=`` alone is the
defaults); a key ``env.VAR`` sets an environment variable of that variant's process instead,
e.g. ``nodnn=env.TF_ENABLE_ONEDNN_OPTS=0``. Each round runs every variant, and the anchor, once, each in a fresh process
(threads and precision are process-wide), in turn: A B C anchor, A B C anchor, ... so a
machine whose speed drifts (other jobs) affects all of them alike. Each run measures the
VACNN as the anchor does: 96 random images, training at batch 8 (one warm-up epoch, then
two timed, all three in one ``fit``), inference at batch 32 and the latency of one image, here through
``runtime.predict_function`` (``vacnn bench`` times the exported SavedModel instead). Printed:
per-round figures, then medians over rounds, with wall-clock samples/s and the CPU
milliseconds this process spent per sample (less sensitive to other jobs). The load
average is printed before every round. Figures printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(overrides: list[str]) -> dict[str, float]:
    """One measurement in this process (what the parent starts per variant and round)."""
    from vacnn_tf.config import load_config
    from vacnn_tf.models.runtime import configure_runtime

    config = load_config(None, overrides)
    configure_runtime(config.train)
    import keras
    import tensorflow as tf

    from vacnn_tf.bench import epoch_timer
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.models.optimization import compile_model
    from vacnn_tf.models.runtime import predict, predict_function

    keras.utils.set_random_seed(0)
    n, bs = 96, config.train.batch_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 224, 224, 1)).astype(np.float32)
    y = rng.integers(0, 7, n).astype(np.int32)
    model = build_vacnn(7, config=config.model)
    compile_model(model, config.train, steps_per_epoch=n // bs)
    ds = tf.data.Dataset.from_tensor_slices(({"logmel": x}, y)).batch(bs).prefetch(tf.data.AUTOTUNE)
    timer = epoch_timer()  # epochs timed inside one fit, the first one (tracing) dropped
    model.fit(ds, epochs=3, verbose=0, callbacks=[timer])
    train_wall, train_cpu = timer.walls[1:], timer.cpus[1:]
    predict(model, x[:32])
    infer_wall, infer_cpu = [], []
    for _ in range(2):
        wall, cpu = time.perf_counter(), time.process_time()
        predict(model, x, batch_size=32)
        infer_wall.append(time.perf_counter() - wall)
        infer_cpu.append(time.process_time() - cpu)
    forward = predict_function(model)
    one = {"logmel": tf.constant(x[:1])}
    for _ in range(3):
        forward(one).numpy()
    latency = []
    for _ in range(20):
        start = time.perf_counter()
        forward(one).numpy()
        latency.append((time.perf_counter() - start) * 1000)
    return {
        "train": n / float(np.median(train_wall)),
        "train_cpu_ms": float(np.median(train_cpu)) / n * 1000,
        "infer": n / float(np.median(infer_wall)),
        "infer_cpu_ms": float(np.median(infer_cpu)) / n * 1000,
        "latency_ms": float(np.median(latency)),
    }


def run_anchor(command: str) -> dict[str, float]:
    """Run the anchor and read its three printed figures."""
    out = subprocess.run(shlex.split(command), capture_output=True, text=True, check=True).stdout
    figures = {}
    for key, pattern in (("train", r"train bs=8: ([\d.]+)"), ("infer", r"infer bs=32: ([\d.]+)"),
                         ("latency_ms", r"latency: ([\d.]+) ms")):
        match = re.search(pattern, out)
        figures[key] = float(match.group(1)) if match else float("nan")
    return figures


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition("=")
    return name, [item for item in rest.split(",") if item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE[,KEY=VALUE...]")
    parser.add_argument("--anchor", default=None, help="command that runs the PyTorch anchor")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.overrides)), flush=True)
        return

    variants = [parse_variant(v) for v in (args.variant or ["default="])]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    if args.anchor:
        results["anchor"] = []
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}: load average {os.getloadavg()}", flush=True)
        for name, overrides in variants:
            env = dict(os.environ)
            env.update(o[4:].split("=", 1) for o in overrides if o.startswith("env."))
            sets = [f"--set={o}" for o in overrides if not o.startswith("env.")]
            command = [sys.executable, __file__, "--child", *sets]
            out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"  {name}: failed\n{out.stderr[-2000:]}", flush=True)
                continue
            results[name].append(json.loads(line[7:]))
            print(f"  {name:12s} {results[name][-1]}", flush=True)
        if args.anchor:
            results["anchor"].append(run_anchor(args.anchor))
            print(f"  {'anchor':12s} {results['anchor'][-1]}", flush=True)
    print(f"medians over {args.rounds} rounds (load average now {os.getloadavg()}):")
    print(f"{'variant':12s} {'train/s':>8s} {'cpu ms':>7s} {'infer/s':>8s} {'cpu ms':>7s} {'lat ms':>7s}")
    for name, runs in results.items():
        if not runs:
            continue

        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return float(np.median([r.get(key, float("nan")) for r in runs]))

        print(f"{name:12s} {med('train'):8.1f} {med('train_cpu_ms'):7.1f} {med('infer'):8.1f} "
              f"{med('infer_cpu_ms'):7.1f} {med('latency_ms'):7.1f}")


if __name__ == "__main__":
    main()
