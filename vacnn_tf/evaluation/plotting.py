"""What every figure of :mod:`vacnn_tf.evaluation.figures` and :mod:`vacnn_tf.evaluation.attention_figures`
draws with: matplotlib on its Agg backend and an atomic PNG write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vacnn_tf.storage import atomic_write

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, imported on first use so importing a figure module stays cheap."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on servers, CI or lab machines
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically and close it (figures hold a lot of memory)."""
    plt = pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)
