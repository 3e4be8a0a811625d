"""Defaults and status names shared by every entry point (CLI, Python API, batch runs, compare, training,
benchmarks), so that they cannot drift apart."""

from __future__ import annotations

DEFAULT_MODEL = "ict"
DEFAULT_LOSSES = "prdl,lmk,reg"
"""The paper's loss set without the perceptual term (face-recognition weights cannot be shipped); the
photometric term joins for models with an albedo."""

CROP_SIZE = 224
"""Side of the square working crop in pixels (the paper's)."""
DETECT_MAX_SIDE = 2048
"""Photos whose longer side exceeds this are shrunk (a copy) for the landmark detector."""
MIN_FACE_SIZE = 40.0
"""Faces whose landmark box (larger side, photo pixels) is smaller are refused."""

RIGID_ITERATIONS = 5
"""Levenberg–Marquardt iterations on the pose alone (after PnP)."""
LM_ITERATIONS = 20
"""Levenberg–Marquardt iterations on pose, identity and expression against landmarks and prior."""
ITERATIONS = 20
"""Refinement iterations with the geometric losses (PRDL by default)."""
ANNOTATION_VIEWS = 100
"""Renders Algorithm 1 votes over (part labels, landmark correspondence and its noise)."""
CPU_THREADS = 1
"""Torch intra-op threads of the command line on CPU.  Measured on the 2-core machine (benchmarks/bench_fit.py,
two runs): one thread is 14–40 % slower than two when the machine is quiet and about twice as fast when
another job holds a core, so one is never the slow case; batch runs with worker processes use one per worker
anyway."""

# the status of a photo or face in reports, done.json and FitResult.status
STATUS_OK = "ok"
STATUS_LOAD_ERROR = "load_error"
STATUS_NO_FACE = "no_face"
STATUS_TOO_SMALL = "face_too_small"
STATUS_DIVERGED = "diverged"
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_LOAD_ERROR, STATUS_NO_FACE, STATUS_TOO_SMALL, STATUS_DIVERGED, STATUS_ERROR)
