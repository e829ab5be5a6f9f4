"""Figures (matplotlib, Agg backend; imported only when a figure is drawn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flyrecon.atomic import write_with


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reconstruction_figure(
    path: Path, obj: np.ndarray, probe: np.ndarray, loss: list[float], title: str
) -> Path:
    """Object amplitude and phase, probe amplitude and phase, and the loss curve, as PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), constrained_layout=True)
    panels = [
        (axes[0, 0], np.abs(obj), "object amplitude", "gray"),
        (axes[0, 1], np.angle(obj), "object phase (rad)", "twilight"),
        (axes[1, 0], np.abs(probe), "probe amplitude", "magma"),
        (axes[1, 1], np.angle(probe), "probe phase (rad)", "twilight"),
    ]
    for ax, image, label, cmap in panels:
        shown = ax.imshow(image, cmap=cmap)
        ax.set_title(label)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, shrink=0.8)
    ax = axes[0, 2]
    ax.plot(np.arange(1, len(loss) + 1), loss, marker=".")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    axes[1, 2].set_axis_off()
    fig.suptitle(title)
    try:
        return write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=90))
    finally:
        plt.close(fig)
