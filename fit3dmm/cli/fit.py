"""``fit3dmm fit``: reconstruct the face in each photo and write mesh, parameters and overlay."""

from __future__ import annotations

from pathlib import Path

import click

from fit3dmm.cli.common import fail, loss_options, model_option, progress_bar
from fit3dmm.fitting.engine import FitConfig


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Output folder, or a mesh path (.obj/.ply/.glb) for a single photo.")
@loss_options
@model_option
@click.option("--iterations", default=200, show_default=True, type=click.IntRange(0, 100000),
              help="Adam iterations on all coefficients.")
@click.option("--rigid-iterations", default=60, show_default=True, type=click.IntRange(0, 100000),
              help="Adam iterations on the pose before that.")
@click.option("--size", default=224, show_default=True, type=click.IntRange(64, 1024),
              help="Working crop size in pixels.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--color", type=click.Choice(["vertex", "none"]), default="vertex", show_default=True,
              help="Mesh colours sampled from the photo, or none.")
@click.option("--space", type=click.Choice(["photo", "camera"]), default="photo", show_default=True,
              help="Mesh coordinates: photo pixels (lines up with the photo) or camera cm.")
@click.option("--seg", "seg", type=click.Path(path_type=Path), default=None,
              help="A label map for the photo from another face parser (one photo only).")
@click.option("--seg-format", type=click.Choice(["celebamask", "lapa", "helen", "fasseg"]), default=None,
              help="Convention of --seg.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fit(images, out, losses, weights, model, iterations, rigid_iterations, size, device, color, space, seg,
        seg_format, quiet) -> None:
    """Fit the face model to IMAGES and write a mesh, parameters (JSON) and an overlay PNG per photo."""
    from fit3dmm import api
    from fit3dmm.io.outputs import OutputPaths, save_outputs
    from fit3dmm.models.annotate import ensure_annotations
    from fit3dmm.observe.image import find_images, load_image

    config = FitConfig(iterations=iterations, rigid_iterations=rigid_iterations)
    paths = find_images(list(images))
    single_file = Path(out).suffix.lower() in (".obj", ".ply", ".glb")
    if single_file and len(paths) > 1:
        fail(f"{out}: a mesh path can only be given for one photo; pass a folder for {len(paths)} photos")
    if seg is not None and len(paths) > 1:
        fail(f"{seg}: --seg applies to one photo, got {len(paths)}")
    face_model = api.load_model(model)
    weights_map = api.parse_losses(losses or api.default_losses(face_model), weights)
    segmentation = None
    if api.needs_parts(weights_map):
        segmentation = api.part_targets(seg, seg_format)
        if not face_model.has_parts:
            click.echo(f"annotating {face_model.name} with Algorithm 1 (once; cached for later runs)...",
                       err=True)
            ensure_annotations(face_model)
    elif seg is not None:
        fail(f"{seg}: --seg is given but none of the losses {', '.join(weights_map)} uses segmentation")
    for path in paths:
        photo = load_image(path)
        target = out if single_file else Path(out) / path.stem
        with progress_bar(quiet, f"{path.name}") as report:
            result = api.fit(photo, model=face_model, losses=list(weights_map), weights=weights_map,
                             config=config, size=size, device=device, segmentation=segmentation,
                             progress=report)
        written = save_outputs(result, 0, photo, OutputPaths.for_target(target), color=color, space=space)
        err = api.landmark_error(result, 0)
        if not quiet:
            click.echo(f"{path}: mean 68-landmark distance {err:.2f} px; wrote "
                       + ", ".join(str(p) for p in written))
