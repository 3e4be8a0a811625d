"""Defaults and status names shared by every entry point (CLI, Python API, batch runs, compare, training,
benchmarks), so that they cannot drift apart."""

from __future__ import annotations

import re

DEFAULT_MODEL = "ict"
MODEL_KINDS: tuple[str, ...] = ("ict", "bfm2009", "3ddfa_v3")
"""The face model kinds fit3dmm loads (:mod:`fit3dmm.models.store`)."""
TRACK_LOSSES = "lmk,reg"
"""The losses of ``fit3dmm track`` by default (landmarks and prior each frame; ``--loss prdl,lmk,reg`` adds a
few PRDL steps per frame)."""
DEFAULT_LOSSES = "prdl,lmk,reg"
"""The paper's loss set without the perceptual term (face-recognition weights cannot be shipped); the
photometric term joins for models with an albedo."""
GEOMETRIC_LOSSES = ("prdl", "softras", "icp", "icp_rev", "chamfer", "dcd")
"""The losses that pull the model's outline or parts onto the photo's, which ``compare`` fits each alone."""

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
LABEL_FORMATS = ("bisenet", "celebamask-hq", "fasseg", "helen", "lapa")
"""Class orders of imported label maps (``--seg-format``; the tables are :data:`fit3dmm.observe.labelmaps.FORMATS`)."""

ANNOTATION_VIEWS = 100
"""Renders Algorithm 1 votes over (part labels, landmark correspondence and its noise)."""
CPU_THREADS = 1
"""Torch intra-op threads of the command line on CPU.  Measured on the 2-core machine (benchmarks/bench_fit.py,
two runs): one thread is 14–40 % slower than two when the machine is quiet and about twice as fast when
another job holds a core, so one is never the slow case; batch runs with worker processes use one per worker
anyway."""
DEVICES = "auto, cpu, cuda or cuda:N"
"""The devices a fit runs on (``--device``)."""

# the status of a photo or face in reports, done.json and FitResult.status
STATUS_OK = "ok"
STATUS_LOAD_ERROR = "load_error"
STATUS_NO_FACE = "no_face"
STATUS_TOO_SMALL = "face_too_small"
STATUS_DIVERGED = "diverged"
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_LOAD_ERROR, STATUS_NO_FACE, STATUS_TOO_SMALL, STATUS_DIVERGED, STATUS_ERROR)


RETIRED_LABEL_FORMATS = {
    "celebamask": "label map format 'celebamask' is ambiguous and no longer accepted: choose celebamask-hq "
                  "(CelebAMask-HQ's own labels, the order of its g_mask.py) or bisenet (the order of "
                  "face-parsing.PyTorch's BiSeNet, facexlib and their copies)",
}
"""Former ``--seg-format`` names and why each is refused."""


def check_label_format(fmt: str) -> str:
    """``fmt`` when it is one of :data:`LABEL_FORMATS`: a check of the name alone (no torch needed).

    Raises:
        ValueError: one line, for an unknown name or a retired one (:data:`RETIRED_LABEL_FORMATS`).
    """
    if fmt in RETIRED_LABEL_FORMATS:
        raise ValueError(RETIRED_LABEL_FORMATS[fmt])
    if fmt not in LABEL_FORMATS:
        raise ValueError(f"unknown label map format {fmt!r}; choose one of {', '.join(LABEL_FORMATS)}")
    return fmt


def check_device(device: str) -> str:
    """``device`` when it is one of :data:`DEVICES` (``cpu:N`` too): a check of the name alone, so that the
    command line refuses a typo before it loads torch (which then says whether CUDA is there).

    Raises:
        ValueError: one line naming the device and the choices.
    """
    if not re.fullmatch(r"auto|(cpu|cuda)(:(0|[1-9][0-9]*))?", device):
        raise ValueError(f"--device {device}: unknown device; use {DEVICES}")
    return device
