"""How a batch is run and what it runs on: options, the checked request, one job per photo."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fit3dmm.batch.folder import RESERVED_NAMES
from fit3dmm.io.mesh import MESH_FORMATS
from fit3dmm.io.outputs import MeshExtras, OutputOptions
from fit3dmm.losses.registry import parse_losses
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.image import find_images, load_image
from fit3dmm.observe.labelmaps import load_label_map


@dataclass(frozen=True)
class BatchOptions:
    """How a batch is run (observing, losses and schedule are the pipeline's).

    Attributes:
        batch_size: faces fitted together (B ≥ 1).
        jobs: worker processes for detection and writing; 0 runs everything in this process.
        overwrite: redo photos that already have a complete output.
        outputs: which files to write per face.
    """

    batch_size: int = 1
    jobs: int = 0
    overwrite: bool = False
    outputs: OutputOptions = field(default_factory=OutputOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 1024:
            raise ValueError(f"--batch-size must be an integer in 1..1024, got {self.batch_size!r}")
        if not isinstance(self.jobs, int) or not 0 <= self.jobs <= 256:
            raise ValueError(f"--jobs must be an integer in 0..256, got {self.jobs!r}")


@dataclass(frozen=True)
class LabelMap:
    """An imported label map of a photo: its file and format (see :mod:`fit3dmm.observe.labelmaps`)."""

    path: Path
    format: str


@dataclass(frozen=True)
class PhotoJob:
    """One input photo: its position in the inputs, its path, its output folder name, its label map."""

    index: int
    path: Path
    name: str
    labels: LabelMap | None = None


def output_names(paths: Sequence[str | Path]) -> list[str]:
    """Output folder names for photos: the stem, or ``<stem>-<8 hex digits of the sha1 of the absolute
    path>`` when the stem is shared (case-insensitively), reserved or hidden (leading dots are dropped:
    ``.x.jpg`` → ``x-<hash>``).  The name of a photo depends on the set of inputs, not on their order;
    names are unique."""
    paths = [Path(p) for p in paths]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("the same photo is listed twice")
    stems = [p.stem for p in paths]
    counts = Counter(s.lower() for s in stems)
    names = []
    for path, stem in zip(paths, stems, strict=True):
        unsafe = stem.lower() in RESERVED_NAMES or stem.startswith(".") or counts[stem.lower()] > 1
        if unsafe:  # hidden names are for temporaries: drop leading dots
            digest = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
            stem = f"{stem.lstrip('.') or 'photo'}-{digest}"
        names.append(stem)
    return names


def plan_jobs(paths: Sequence[str | Path], labels: LabelMap | None = None) -> list[PhotoJob]:
    """One :class:`PhotoJob` per photo, in the given order, named by :func:`output_names` (``labels``: the
    label map of the single photo)."""
    return [PhotoJob(i, Path(p), name, labels)
            for i, (p, name) in enumerate(zip(paths, output_names(paths), strict=True))]


@dataclass
class BatchRequest:
    """Checked inputs of a ``fit`` command: the photos, the label map of a single photo, and, for a single
    photo, the mesh path to write with its output options; ``notes``: what the checks found that the user
    should know, one line each (a label map resized to its photo)."""

    paths: list[Path]
    labels: LabelMap | None
    mesh_target: Path | None
    outputs: OutputOptions
    notes: list[str] = field(default_factory=list)


def check_request(images: Sequence[str | Path], out: str | Path, options: BatchOptions, *, faces: str = "largest",
                  mesh_format: str | None = None, losses: str | None = None, weights: dict[str, float] | None = None,
                  seg: Path | None = None, seg_format: str | None = None, recursive: bool = False) -> BatchRequest:
    """Every check that needs neither the model nor a fit, so that bad requests fail before any work.

    Checks: the losses and weights (when given), the inputs (:func:`~fit3dmm.observe.image.find_images`;
    files inside a folder ``out`` are left out, they are earlier outputs), a mesh path ``out`` (one photo
    that loads, the largest face, a format that agrees), ``--seg`` (with ``--seg-format``, one photo, a label
    map of the photo's size).

    Raises:
        ValueError (ImageLoadError, LabelMapError): with a one-line message.
    """
    if losses:
        parse_losses(losses, weights)
    elif weights:
        parse_losses(list(weights), weights)  # names and values; membership is checked with the model
    if (seg is None) != (seg_format is None):
        raise ValueError("--seg and --seg-format go together")
    out = Path(out)
    mesh_target = out if out.suffix.lower() in MESH_FORMATS else None
    paths = find_images(list(images), recursive=recursive)
    outputs = options.outputs
    if mesh_target is None:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder (a mesh path must end in .obj, .ply or .glb)")
        root = out.resolve()
        paths = [p for p in paths if not p.resolve().is_relative_to(root)]
        if not paths:
            raise ValueError(f"all input images lie inside the output folder {out}")
    else:
        if len(paths) > 1:
            raise ValueError(f"{out}: a mesh path can only be given for one photo; pass a folder for {len(paths)} "
                             "photos")
        if faces == "all":
            raise ValueError(f"{out}: a mesh path holds one face; pass a folder with --faces all")
        if mesh_format is not None and "." + mesh_format.lower() != out.suffix.lower():
            raise ValueError(f"--format {mesh_format} disagrees with the mesh path {out}")
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; a mesh path must be a file")
        outputs = dataclasses.replace(options.outputs, mesh_format=out.suffix)
        load_image(paths[0])  # one photo: an unreadable file is refused now
    labels, notes = None, []
    if seg is not None:
        if len(paths) > 1:
            raise ValueError(f"{seg}: --seg applies to one photo, got {len(paths)}")
        notes = load_label_map(seg, seg_format, load_image(paths[0]).shape[:2]).notes
        labels = LabelMap(Path(seg), seg_format)
    return BatchRequest(paths, labels, mesh_target, outputs, notes)


def check_model_outputs(model: FaceModel, outputs: OutputOptions) -> str:
    """Refuse outputs the model cannot give (a part map without annotations, a texture without UVs); returns
    the colour mode that will be written."""
    extras = MeshExtras.from_model(model)
    if outputs.parts and extras.part_labels is None:
        raise ValueError(f"--parts needs part annotations on the model {model.name}; build them once with "
                         "`fit3dmm models annotate`")
    return outputs.resolved_color(extras)
