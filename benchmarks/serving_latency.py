"""Single-utterance SavedModel latency: the exported graph with and without the serving GroupNorm.

Usage (from the repository root)::

    .venv/bin/python benchmarks/serving_latency.py --rounds 5 \
        --anchor "TORCH_ENV/bin/python ANCHOR"

Exports one randomly initialised VACNN twice: as ``vacnn export`` writes it (every
GroupNormalization replaced by ``ChannelStatsGroupNormalization``, :func:`vacnn_tf.serving.export.serving_model`)
and with Keras's own GroupNormalization (the export before that change). Each round times
``calls`` batch-1 calls of each ``serving_default`` (after 5 untimed), then runs the anchor
once in its own process, so a machine whose speed drifts affects all alike. Printed: per-round
medians and p95, then the median of the rounds' medians, the anchor's "bs=1 latency" (its mean
of 10 calls) and the ratios. Figures printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--anchor", default="", help="command that runs the PyTorch anchor (optional)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import tensorflow as tf

    from vacnn_tf import bench
    from vacnn_tf.config import RunConfig
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.serving import export

    model = build_vacnn(7)
    classes = [str(i) for i in range(7)]
    work = Path(tempfile.mkdtemp(prefix="vacnn-latency-"))
    serves = {}
    for name, serving_graph in (("serving GN", True), ("Keras GN", False)):
        target = export.write_savedmodel(model, work / name.replace(" ", "_") / "1", classes, RunConfig(),
                                         serving_graph=serving_graph)
        serves[name] = tf.saved_model.load(str(target)).signatures["serving_default"]
    example = {"logmel": np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 1)).astype(np.float32)}
    medians: dict[str, list[float]] = {name: [] for name in serves}
    anchor: list[float] = []
    for r in range(args.rounds):
        line = [f"round {r + 1} (load {os.getloadavg()[0]:.2f}):"]
        for name, serve in serves.items():
            med, p95 = bench._time_signature(serve, example, args.calls)  # noqa: SLF001 - the bench's own timer
            medians[name].append(med)
            line.append(f"{name} {med:.2f} ms (p95 {p95:.2f})")
        if args.anchor:
            out = subprocess.run(shlex.split(args.anchor), capture_output=True, text=True, check=True).stdout
            found = re.search(r"bs=1 latency: ([0-9.]+) ms", out)
            if found:
                anchor.append(float(found.group(1)))
                line.append(f"anchor {anchor[-1]:.1f} ms")
        print("  ".join(line), flush=True)
    print(f"\nmachine: {bench.machine_info()}  keras {keras.__version__}  tensorflow {tf.__version__}")
    for name, values in medians.items():
        text = f"{name}: median of round medians {np.median(values):.2f} ms (range {min(values):.2f}-{max(values):.2f})"
        if anchor:
            text += f"; ratio to the anchor's median {np.median(anchor):.2f} ms: {np.median(values) / np.median(anchor):.2f}"
        print(text)
    if anchor:
        print(f"anchor: {', '.join(f'{a:.1f}' for a in anchor)} ms")


if __name__ == "__main__":
    main()
