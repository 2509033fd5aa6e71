"""Run the PyTorch anchor with its clock read as CPU time: its figures become samples per CPU-second.

Usage (in the anchor's own environment)::

    TORCH_ENV/bin/python benchmarks/anchor_cpu_clock.py ANCHOR 1

The anchor's source is executed unchanged except that ``time.time`` returns this process's CPU
time and, when a thread count is given, ``torch.set_num_threads(2)`` becomes that count. On a
machine shared with other jobs, CPU time per sample is steadier than wall-clock throughput;
compare with ``train_cpu_ms`` / ``infer_cpu_ms`` of ``runtime_variants.py`` (variant
``train.intra_op_threads=1,train.inter_op_threads=1`` for one thread). Figures printed only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(anchor: str, threads: str | None = None) -> None:
    source = Path(anchor).read_text()
    if threads is not None:
        source = source.replace("torch.set_num_threads(2)", f"torch.set_num_threads({int(threads)})")
    time.time = time.process_time  # the anchor times with time.time()
    exec(compile(source, anchor, "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main(*sys.argv[1:3])
