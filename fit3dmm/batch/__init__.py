"""Batch fitting: many photos in, one output folder per photo and a report out; interruptible and resumable.

Layout of an output folder ``OUT``::

    OUT/report.csv            one row per fitted face or failed photo (columns: REPORT_COLUMNS + loss_*),
                              rewritten atomically every 30 s and at the end (also after Ctrl-C)
    OUT/<name>/face.obj ...   the files of :mod:`fit3dmm.io.outputs` (``--faces all``: face0.*, face1.*, ...)
    OUT/<name>/done.json      written last: input, options, report rows and files of the photo

``<name>`` is the photo's file stem (:func:`~fit3dmm.batch.options.output_names`).  Each photo's folder is
complete or absent (:mod:`fit3dmm.batch.folder`); reruns resume (:mod:`fit3dmm.batch.run`).

Statuses (the ``status`` column, :mod:`fit3dmm.defaults`): ``ok``; ``load_error`` (missing, unreadable,
empty, truncated or not an image); ``no_face``; ``face_too_small`` (landmark box below ``min_face_size``);
``diverged`` (the loss became non-finite, also after one retry with a safer schedule); ``error`` (anything
else, with the exception's type and message).  Failed photos get a row with an empty ``face``.

Modules: :mod:`~fit3dmm.batch.options` (options, the checked request, jobs), :mod:`~fit3dmm.batch.workers`
(load, observe, write; worker processes), :mod:`~fit3dmm.batch.folder` (the locked output folder),
:mod:`~fit3dmm.batch.report` (report rows, summary), :mod:`~fit3dmm.batch.run` (the run loop).
"""

from fit3dmm.batch.folder import MARKER_NAME, REPORT_NAME, OutputFolder
from fit3dmm.batch.options import (
    BatchOptions,
    BatchRequest,
    LabelMap,
    PhotoJob,
    check_model_outputs,
    check_request,
    output_names,
    plan_jobs,
)
from fit3dmm.batch.report import BatchSummary, PhotoOutcome, face_row, read_report, write_report
from fit3dmm.batch.run import fit_to_mesh_path, run_batch, terminate_as_interrupt

__all__ = [
    "MARKER_NAME",
    "REPORT_NAME",
    "BatchOptions",
    "BatchRequest",
    "BatchSummary",
    "LabelMap",
    "OutputFolder",
    "PhotoJob",
    "PhotoOutcome",
    "check_model_outputs",
    "check_request",
    "face_row",
    "fit_to_mesh_path",
    "output_names",
    "plan_jobs",
    "read_report",
    "run_batch",
    "terminate_as_interrupt",
    "write_report",
]
