"""The report of a batch run: one row per fitted face or failed photo (``OUT/report.csv``), and the summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fit3dmm.api import FaceFit, landmark_error
from fit3dmm.batch.options import PhotoJob
from fit3dmm.defaults import STATUS_OK
from fit3dmm.io.tables import read_csv, write_csv

REPORT_COLUMNS = (
    "input", "output", "face", "status", "error", "resumed", "retried", "width", "height", "face_size_px",
    "landmark_error_px", "iterations", "loss_total",
)
"""Fixed report columns; ``loss_<name>`` (final unweighted value of each loss) and the timings
``time_load_s``, ``time_detect_s``, ``time_fit_s`` (the batch's fitting time shared among its faces),
``time_write_s`` follow."""
TIME_COLUMNS = ("time_load_s", "time_detect_s", "time_fit_s", "time_write_s")


def report_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The report's columns for ``rows``: the fixed ones, ``loss_*`` in order of appearance, the timings."""
    losses = dict.fromkeys(k for row in rows for k in row if k.startswith("loss_") and k != "loss_total")
    return [*REPORT_COLUMNS, *losses, *TIME_COLUMNS]


def write_report(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Atomically write the report CSV (:func:`~fit3dmm.io.tables.write_csv`)."""
    write_csv(path, rows, report_columns(rows))


def read_report(path: str | Path) -> list[dict[str, str]]:
    """The rows of a report CSV as dicts of strings."""
    return read_csv(path)


def face_row(fit: FaceFit) -> dict[str, Any]:
    """Report fields of a fitted face: status, landmark error (px), iterations, losses, fitting time."""
    row: dict[str, Any] = {"status": fit.status, "error": fit.error, "retried": int(fit.retried),
                           "time_fit_s": round(fit.seconds, 4)}
    result = fit.result
    if result is None:
        return row
    losses = {name: float(value[0]) for name, value in result.losses.items()}
    row["landmark_error_px"] = _round(landmark_error(result, 0))
    row["iterations"] = result.iterations(0)
    row["loss_total"] = _round(sum(result.weights[name] * v for name, v in losses.items()))
    row.update({f"loss_{name}": _round(v) for name, v in losses.items()})
    return row


def _round(value: float) -> float | str:
    return float(f"{value:.6g}") if np.isfinite(value) else str(value)


@dataclass
class BatchSummary:
    """What a batch run did.

    Attributes:
        photos: inputs.
        fitted: photos written in this run.
        resumed: photos skipped because they were complete.
        failed: photos with no output (see the report).
        faces: fitted faces written in this run.
        statuses: count of report rows by status (resumed rows included).
        stale: resumed photos that had been made with other options.
        seconds: wall time.
        report: path of the report CSV.
        landmark_errors: per fitted face, the mean distance (photo px) between the fitted model's projected
            68 landmarks and the detected ones.
    """

    photos: int = 0
    fitted: int = 0
    resumed: int = 0
    failed: int = 0
    faces: int = 0
    statuses: Counter = field(default_factory=Counter)
    stale: int = 0
    seconds: float = 0.0
    report: Path | None = None
    landmark_errors: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no report row failed."""
        return all(status == STATUS_OK for status in self.statuses.elements())

    def lines(self) -> list[str]:
        """A human-readable summary."""
        rate = self.fitted / self.seconds if self.seconds > 0 else 0.0
        out = [f"{self.photos} photos: {self.fitted} fitted ({self.faces} faces, {rate:.2f} photos/s), "
               f"{self.resumed} already done, {self.failed} failed"]
        if self.landmark_errors:
            errors = self.landmark_errors
            out.append(f"mean 68-landmark distance, fitted vs detected: {sum(errors) / len(errors):.2f} px"
                       + (f" (median over {len(errors)} faces: {sorted(errors)[len(errors) // 2]:.2f} px)"
                          if len(errors) > 1 else ""))
        failures = {k: v for k, v in sorted(self.statuses.items()) if k != STATUS_OK}
        if failures:
            out.append("failures by status: " + ", ".join(f"{k} {v}" for k, v in failures.items()))
        if self.stale:
            out.append(f"{self.stale} photos were skipped although they were made with other options; "
                       "use --overwrite to redo them")
        if self.report is not None:
            out.append(f"report: {self.report}")
        return out


@dataclass
class PhotoOutcome:
    """A photo finished in this run: its report rows and whether its folder was written."""

    job: PhotoJob
    rows: list[dict[str, Any]]
    committed: bool


class BatchProgress(Protocol):
    """Receives the progress of :func:`~fit3dmm.batch.run.run_batch` (the command line draws a bar from it)."""

    def start(self, total: int, resumed: int) -> None:
        """``total`` photos to process in this run; ``resumed`` skipped as complete."""

    def photo_done(self, outcome: PhotoOutcome) -> None:
        """One photo is finished (written or failed)."""
