"""``fit3dmm fit``: reconstruct the faces of photos and write mesh, parameters, overlay (and more) per photo.

``--out`` a folder: batch mode (:mod:`fit3dmm.batch`): one sub-folder per photo, ``report.csv``, resumable,
exit code 1 when any photo failed.  ``--out face.obj`` (or .ply/.glb) with one photo: that mesh and its
sibling files.  Every check of the options and inputs runs before any photo is processed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fit3dmm import defaults
from fit3dmm.cli.common import (
    device_option,
    loss_options,
    model_option,
    progress_bar,
    schedule_options,
    seg_format_option,
    size_option,
    use_threads,
)


class _BatchBar:
    """A tqdm bar over photos (rate and ETA; only on a terminal and without --quiet) that also prints one
    line per failed photo or face on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.show = not quiet and sys.stderr.isatty()
        self.bar = None

    def start(self, total: int, resumed: int) -> None:
        from tqdm import tqdm

        if resumed:
            click.echo(f"{resumed} photos already done (skipped; --overwrite redoes them)", err=True)
        self.bar = tqdm(total=total, unit="photo", dynamic_ncols=True, disable=not self.show, file=sys.stderr)

    def photo_done(self, outcome) -> None:
        from fit3dmm.defaults import STATUS_OK

        for row in outcome.rows:
            if row["status"] != STATUS_OK:
                message = row["error"] if outcome.job.path.name in row["error"] else \
                    f"{outcome.job.path}: {row['error']}"
                face = f" (face {row['face']})" if row.get("face", "") != "" else ""
                self.bar.write(f"{row['status']}{face}: {message}", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Output folder (one sub-folder per photo, report.csv), or a mesh path (.obj/.ply/.glb) for a "
                   "single photo.")
@loss_options
@model_option
@schedule_options
@click.option("--init", "init", type=click.Path(path_type=Path), default=None,
              help="A regressor from `fit3dmm train` (RUN/model.pt): its prediction starts each fit instead of "
                   "the landmark PnP pose and the mean face; pair it with --rigid-iterations 0.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed of the fit.")
@size_option
@device_option
@click.option("--faces", type=click.Choice(["largest", "all"]), default="largest", show_default=True,
              help="Fit the largest face of each photo, or every face (files face0.*, face1.*, ...).")
@click.option("--min-face-size", default=defaults.MIN_FACE_SIZE, show_default=True, type=click.FloatRange(0, 1e6),
              help="Refuse faces whose landmark box is smaller (photo pixels).")
@click.option("--detect-max-side", default=defaults.DETECT_MAX_SIDE, show_default=True, type=click.IntRange(64, 16384),
              help="Larger photos are shrunk to this side for the detector (the crop uses the full photo).")
@click.option("--format", "mesh_format", type=click.Choice(["obj", "ply", "glb"]), default=None,
              help="Mesh format in a folder (default obj); with a mesh path, its extension decides.")
@click.option("--color", type=click.Choice(["auto", "texture", "vertex", "none"]), default="auto",
              show_default=True,
              help="Texture map baked from the photo (OBJ/GLB), vertex colours, or none; auto: texture when "
                   "the format and model allow it, else vertex.")
@click.option("--texture-size", default=512, show_default=True, type=click.IntRange(16, 8192),
              help="Texture map side in pixels.")
@click.option("--space", type=click.Choice(["photo", "camera"]), default="photo", show_default=True,
              help="Mesh coordinates: photo pixels (lines up with the photo) or camera cm.")
@click.option("--npz", is_flag=True, help="Also write the parameters as NPZ arrays.")
@click.option("--depth", is_flag=True, help="Also write a 16-bit depth PNG at photo resolution (0.1 mm units).")
@click.option("--parts", is_flag=True, help="Also write a colour-coded part map PNG (needs an annotated model).")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Write the overlay PNG.")
@click.option("--seg", "seg", type=click.Path(path_type=Path), default=None,
              help="A label map for the photo from another face parser (one photo only).")
@seg_format_option
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="Faces fitted at once (for a GPU; on CPU the fit is compute-bound and a batch runs until "
                   "its slowest face is done, so 1 is fastest there: see benchmarks/README.md).")
@click.option("--jobs", default=0, show_default=True, type=click.IntRange(0, 256),
              help="Worker processes for detection and writing (0: all in this process).")
@click.option("--overwrite", is_flag=True, help="Redo photos that already have complete outputs.")
@click.option("-r", "--recursive", is_flag=True, help="Also take the images in sub-folders of folder inputs.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@click.pass_context
def fit(ctx, images, out, losses, weights, model, rigid_iterations, lm_iterations, iterations, init, seed, size,
        device, threads, faces, min_face_size, detect_max_side, mesh_format, color, texture_size, space, npz, depth,
        parts, overlay, seg, seg_format, batch_size, jobs, overwrite, recursive, quiet) -> None:
    """Fit the face model to IMAGES (files, folders or glob patterns) and write a mesh, parameters (JSON) and
    an overlay PNG per face."""
    from fit3dmm.observe.image import find_images

    paths = find_images(list(images), recursive=recursive)  # a missing input fails before torch is loaded
    from fit3dmm import batch
    from fit3dmm.api import ObserveOptions, Pipeline, Schedule
    from fit3dmm.io.outputs import OutputOptions

    use_threads(threads)
    outputs = OutputOptions(mesh_format=mesh_format or "obj", color=color, space=space, overlay=overlay, npz=npz,
                            depth=depth, parts=parts, texture_size=texture_size)
    options = batch.BatchOptions(batch_size=batch_size, jobs=jobs, overwrite=overwrite, outputs=outputs)
    observe = ObserveOptions(size=size, faces=faces, min_face_size=min_face_size, detect_max_side=detect_max_side)
    request = batch.check_request(paths, out, options, faces=faces, mesh_format=mesh_format, losses=losses,
                                  weights=weights, seg=seg, seg_format=seg_format)
    for note in request.notes:
        click.echo(f"warning: {note}", err=True)
    pipeline = Pipeline.create(model=model, losses=losses, weights=weights, observe=observe, device=device,
                               schedule=Schedule(rigid_iterations=rigid_iterations, lm_iterations=lm_iterations,
                                                 iterations=iterations, seed=seed),
                               init=init, on_annotate=lambda line: click.echo(line, err=True))
    if request.labels is not None:
        pipeline.check_labels(str(request.labels.path))
    batch.check_model_outputs(pipeline.model, request.outputs)
    if request.mesh_target is not None:
        with progress_bar(quiet, request.paths[0].name) as report:
            written, fitted = batch.fit_to_mesh_path(request.paths[0], request.mesh_target, pipeline, request.outputs,
                                                     labels=request.labels, progress=report)
        if not quiet:
            err = batch.face_row(fitted)["landmark_error_px"]
            click.echo(f"{request.paths[0]}: mean 68-landmark distance {err:.2f} px; wrote "
                       + ", ".join(str(p) for p in written))
        return
    bar = _BatchBar(quiet)
    try:
        with batch.terminate_as_interrupt():
            summary = batch.run_batch(request.paths, out, pipeline, options, labels=request.labels, progress=bar)
    finally:
        bar.close()
    if not quiet:
        for line in summary.lines():
            click.echo(line)
    if not summary.ok:
        ctx.exit(1)
