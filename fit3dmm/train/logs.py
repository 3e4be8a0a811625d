"""The files of a training run: where they go, the CSV logs and the curves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fit3dmm.io.atomic import atomic_save


@dataclass
class RunPaths:
    """The files of a training run folder."""

    out: Path

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def model(self) -> Path:
        return self.out / "model.pt"

    @property
    def log(self) -> Path:
        return self.out / "log.csv"

    @property
    def val(self) -> Path:
        return self.out / "val.csv"

    @property
    def curves(self) -> Path:
        return self.out / "curves.png"

    @property
    def config(self) -> Path:
        return self.out / "config.json"


def _series(rows: list[dict[str, str]], name: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows where column ``name`` holds a number."""
    pairs = [(int(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_curves(log_rows: list[dict[str, str]], val_rows: list[dict[str, str]], path: Path) -> None:
    """One panel per loss term (training per step, validation per epoch as dots) and one per metric."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not log_rows:
        return
    terms = [c for c in log_rows[0] if c not in ("step", "epoch", "seconds", "lr")]
    metrics = [m for m in ("part_iou", "nme") if val_rows and m in val_rows[0]]
    panels = terms + metrics
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * rows), dpi=80)
    FigureCanvasAgg(fig)
    for k, name in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        if name in terms:
            steps, values = _series(log_rows, name)
            ax.plot(steps, values, lw=0.8, label="train")
            if len(values) >= 10:  # running mean over 10 steps
                window = [sum(values[max(0, i - 9): i + 1]) / len(values[max(0, i - 9): i + 1])
                          for i in range(len(values))]
                ax.plot(steps, window, lw=1.5, label="train (mean of 10)")
            if all(v > 0 for v in values):
                ax.set_yscale("log")
        if val_rows and name in val_rows[0]:
            ax.plot(*_series(val_rows, name), "o-", ms=3, label="validation")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_save(path, lambda p: fig.savefig(p, format="png"))
