"""``fit3dmm models``: list the reachable face models and install new ones."""

from __future__ import annotations

from pathlib import Path

import click

from fit3dmm import defaults


@click.group()
def models() -> None:
    """List, install, annotate and pack face models (search path: $FIT3DMM_MODELS, the user cache, then the
    model shipped in the package)."""


@models.command("list")
def list_command() -> None:
    """List the models found along the search path; '*' marks the one each name resolves to."""
    from fit3dmm.models.store import list_models, search_path

    entries = list_models()
    if not entries:
        click.echo("no face models found in: " + ", ".join(str(p) for p in search_path()))
        click.echo("install one with: fit3dmm models install ict /path/to/ict-facekit-light")
        return
    click.echo(f"  {'kind':<9} {'size':>9} {'checksum':<12} {'annotated':<9} {'landmarks':<9} path")
    for e in entries:
        mark = "*" if e.default else " "
        if e.error:
            click.echo(f"{mark} {e.kind:<9} {'-':>9} {'-':<12} {'-':<9} {'-':<9} {e.path}  ({e.error})")
            continue
        size = f"{e.size / 2**20:.1f}M"
        annotated, landmarks = ("yes" if e.annotated else "no"), ("yes" if e.landmarks else "no")
        click.echo(f"{mark} {e.kind:<9} {size:>9} {e.checksum[:12]:<12} {annotated:<9} {landmarks:<9} {e.path}")


@models.command("install")
@click.argument("kind", type=click.Choice(defaults.MODEL_KINDS, case_sensitive=False))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to install into (default: the user model folder, <cache>/models).")
@click.option("--force", is_flag=True, help="Replace a model of this kind already installed there.")
def install_command(kind: str, source: Path, dest: Path | None, force: bool) -> None:
    """Install a KIND model (ict, bfm2009, 3ddfa_v3) from SOURCE.

    For ict, SOURCE is the ict-facekit-light folder (ict_facekit_light.npz) or an original ICT-FaceKit
    checkout (converted to that npz); bfm2009 wants the BFM 2009 files, 3ddfa_v3 the folder of
    face_model.npy.
    """
    from fit3dmm.models.store import install_model

    path = install_model(kind, source, dest, overwrite=force)
    click.echo(f"installed {kind.lower()} into {path}")


@models.command("annotate")
@click.option("--model", default="ict", show_default=True, help="Model name or path.")
@click.option("--views", default=defaults.ANNOTATION_VIEWS, show_default=True, type=click.IntRange(1, 1000),
              help="Number of random renders to vote over.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random renders.")
@click.option("--figure", type=click.Path(path_type=Path), default=None,
              help="Also write a PNG of the mesh coloured by part (frontal and profile).")
def annotate_command(model: str, views: int, seed: int, figure: Path | None) -> None:
    """Build the model's part annotation and landmark correspondence (the paper's Algorithm 1) and
    cache them next to the model in the user cache; reproducible for a given --views/--seed."""
    from fit3dmm.annotate import AnnotationConfig, annotation_figure, ensure_annotations
    from fit3dmm.io.images import write_png
    from fit3dmm.models.store import assets_dir, load_model

    face_model = load_model(model)
    with click.progressbar(length=views, label="rendering and segmenting") as bar:
        ensure_annotations(face_model, AnnotationConfig(views=views, seed=seed),
                           progress=lambda done, total: bar.update(1), force=True)
    click.echo(f"wrote {assets_dir(face_model) / 'annotations.npz'}")
    if figure is not None:
        write_png(figure, annotation_figure(face_model))
        click.echo(f"wrote {figure}")


@models.command("pack")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--views", default=defaults.ANNOTATION_VIEWS, show_default=True, type=click.IntRange(1, 1000),
              help="Number of random renders Algorithm 1 votes over.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random renders.")
def pack_command(source: Path, dest: Path, views: int, seed: int) -> None:
    """Write the compact ICT-FaceKit Light of SOURCE (a folder with ict_facekit_light.npz and its LICENSE)
    into DEST with its Algorithm 1 assets: how the model shipped in fit3dmm/data/ict-facekit-light is made
    (reproducible for a given --views/--seed)."""
    from fit3dmm.annotate import AnnotationConfig
    from fit3dmm.annotate.pack import pack_annotated_ict

    with click.progressbar(length=views, label="rendering and segmenting") as bar:
        pack_annotated_ict(source, dest, AnnotationConfig(views=views, seed=seed),
                           progress=lambda done, total: bar.update(1))
    click.echo(f"wrote {dest}")
