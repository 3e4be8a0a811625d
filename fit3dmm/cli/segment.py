"""``fit3dmm segment``: the facial part segmentation of a photo (the PRDL target), as images."""

from __future__ import annotations

from pathlib import Path

import click

from fit3dmm.cli.common import fail, seg_format_option


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Colour-coded part map (PNG) in photo resolution; the overlay goes to <stem>_overlay.png.")
@click.option("--seg", "seg", type=click.Path(path_type=Path), default=None,
              help="A label map of the photo from another face parser, used instead of the built-in "
                   "segmenter.")
@seg_format_option
@click.option("--points", is_flag=True,
              help="Also write <stem>_points.png: the target point sets C_p as dots over the working crop, "
                   "enlarged so that every point shows.")
@click.option("--size", default=224, show_default=True, type=click.IntRange(64, 1024),
              help="Working crop size in pixels (where the point sets are computed).")
def segment(image: Path, out: Path, seg: Path | None, seg_format: str | None, points: bool, size: int
            ) -> None:
    """Segment the largest face of IMAGE into the PRDL parts and write the part map and an overlay."""
    from PIL import Image

    from fit3dmm.api import ObserveOptions, default_detector
    from fit3dmm.io.atomic import atomic_files
    from fit3dmm.observe.image import load_image
    from fit3dmm.observe.labelmaps import load_label_map
    from fit3dmm.observe.observe import observe_photo
    from fit3dmm.observe.segment import (
        color_part_map,
        overlay_part_map,
        point_sets_view,
        segment_from_landmarks,
        segment_with_label_map,
    )

    if (seg is None) != (seg_format is None):
        fail("--seg and --seg-format go together: give both or neither")
    if out.suffix.lower() != ".png":
        fail(f"{out}: the part map is written as PNG; give a .png path")
    if not out.parent.is_dir():
        fail(f"{out}: the folder {out.parent} does not exist")
    photo = load_image(image)
    parts = load_label_map(seg, seg_format, photo.shape[:2]) if seg is not None else None
    if parts is not None:
        for note in parts.notes:
            click.echo(f"warning: {note}", err=True)
    # the observe path of `fit`: same detection size, face-size rule, crop, segmentation and point sets
    detector = default_detector()
    try:
        observation = observe_photo(photo, detector, ObserveOptions(size=size, segment=True), name=str(image),
                                    labels=parts)[0]
    finally:
        detector.close()
    landmarks = observation.crop_points_to_photo(observation.landmarks.double())[0].cpu().numpy()
    if parts is None:
        result = segment_from_landmarks(landmarks, photo.shape[:2], photo)
    else:
        result = segment_with_label_map(parts, landmarks)
    colors = color_part_map(result.labels, result.hair)
    overlay = overlay_part_map(photo, colors, (result.labels >= 0) | result.hair)
    pictures = {out: colors, out.with_name(f"{out.stem}_overlay.png"): overlay}
    if points:  # the point sets the fitting uses, where it computes them
        pictures[out.with_name(f"{out.stem}_points.png")] = point_sets_view(photo, observation)
    with atomic_files(list(pictures)) as temps:
        for temp, picture in zip(temps, pictures.values(), strict=True):
            Image.fromarray(picture).save(temp, format="PNG")
    click.echo(f"{image}: wrote {', '.join(str(p) for p in pictures)}")
