"""``fit3dmm train`` (amortise the fit into a ResNet-50 regressor) and ``fit3dmm predict`` (use it)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fit3dmm.cli.common import check_device_option, fail, loss_options, model_option


@click.command()
@click.option("--images", "images", type=click.Path(exists=True, path_type=Path), default=None,
              help="Folder (or file) of training photos.")
@click.option("--val", "val", type=click.Path(exists=True, path_type=Path), default=None,
              help="Folder of validation photos (Part IoU and landmark NME after every epoch).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Run folder: cache/, checkpoints/, log.csv, val.csv, curves.png, model.pt.")
@loss_options
@model_option
@click.option("--targets", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of `fit3dmm fit` outputs (<photo stem>/face.json) to distil from.")
@click.option("--synthetic", default=0, show_default=True, type=click.IntRange(0),
              help="Add N synthetic renders of the face model with known coefficients.")
@click.option("--supervise", default=0.1, show_default=True, type=click.FloatRange(0),
              help="Weight of the vertex-distance term (cm²) on faces with known coefficients.")
@click.option("--size", default=224, show_default=True, type=click.IntRange(64, 1024), help="Crop size in pixels.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Faces per step per process.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(0))
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Adam learning rate.")
@click.option("--num-identity", default=None, type=click.IntRange(1), help="Identity modes to predict (default all).")
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(1),
              help="Steps between checkpoints (also written after every epoch).")
@click.option("--max-steps", default=None, type=click.IntRange(1), help="Stop (with a checkpoint) after N steps.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--backbone-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A torchvision ResNet-50 checkpoint (e.g. resnet50-0676ba61.pth) to start the backbone from.")
@click.option("--device", default="auto", show_default=True, callback=check_device_option,
              help="auto, cpu or cuda (torchrun: one GPU per process).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(images, val, out, losses, weights, model, targets, synthetic, supervise, size, batch_size, epochs, lr,
          num_identity, checkpoint_every, max_steps, resume, seed, backbone_weights, device, quiet) -> None:
    """Train a ResNet-50 to predict the face model's coefficients from a photo, with the fitting losses.

    Runs unchanged under `torchrun --nproc_per_node=N --no-python fit3dmm train ...` (DistributedDataParallel).
    """
    from fit3dmm.observe.image import find_images
    from fit3dmm.train.distributed import DistInfo
    from fit3dmm.train.loop import TrainConfig
    from fit3dmm.train.run import train_from_folders

    if images is None and synthetic == 0:
        fail("nothing to train on: give --images DIR and/or --synthetic N")
    photos = find_images([images]) if images is not None else []
    val_photos = find_images([val]) if val is not None else []
    if images is not None and val is not None and {p.resolve() for p in photos} & {p.resolve() for p in val_photos}:
        fail("--images and --val share photos; keep validation photos out of training")
    # the weights are a placeholder: train_from_folders puts those of --loss/--weight in
    config = TrainConfig(weights={"lmk": 1.0}, size=size, batch_size=batch_size, epochs=epochs, lr=lr,
                         supervise=supervise, checkpoint_every=checkpoint_every, seed=seed,
                         num_identity=num_identity, max_steps=max_steps)
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=1, desc="train", unit="step", dynamic_ncols=True)

    def progress(step: int, total: int, values: dict[str, float]) -> None:
        if bar is not None:
            bar.total, bar.n = total, step
            bar.set_postfix(loss=f"{values.get('total', float('nan')):.4g}", refresh=False)
            bar.refresh()

    def log(message: str) -> None:
        if not quiet:
            (bar.write if bar is not None else click.echo)(message, file=sys.stderr)

    try:
        path = train_from_folders(out, images=photos, val_images=val_photos, model=model, losses=losses,
                                  weights=weights, targets=targets, synthetic=synthetic, config=config,
                                  device=device, resume=resume, backbone_weights=backbone_weights,
                                  progress=progress, log=log)
    finally:
        if bar is not None:
            bar.close()
    if not quiet and DistInfo.from_env().is_main:  # under torchrun, one line for the job
        click.echo(f"wrote {path}")


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--regressor", "regressor", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A trained regressor (run/model.pt).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--model", default=None, help="Face model (default: the one the regressor was trained for).")
@click.option("--device", default="auto", show_default=True, callback=check_device_option,
              help="auto, cpu or cuda.")
@click.option("--color", type=click.Choice(["vertex", "none"]), default="vertex", show_default=True,
              help="Mesh colours sampled from the photo, or none.")
@click.option("--space", type=click.Choice(["photo", "camera"]), default="photo", show_default=True,
              help="Mesh coordinates: photo pixels or camera cm.")
@click.option("--quiet", is_flag=True)
def predict(images, regressor, out, model, device, color, space, quiet) -> None:
    """Reconstruct IMAGES with a trained regressor alone (no fitting); writes the same files as `fit`."""
    from fit3dmm.api import landmark_error, load_model
    from fit3dmm.io.outputs import OutputPaths, save_outputs
    from fit3dmm.models.regressor import check_model, load_regressor
    from fit3dmm.observe.image import find_images, load_image
    from fit3dmm.train.run import predict_photo

    net, meta = load_regressor(regressor)
    face_model = load_model(model or meta["model"].get("name") or "ict")
    check_model(meta, face_model)
    for path in find_images(list(images)):
        photo = load_image(path)
        result = predict_photo(photo, net, face_model, device=device)
        written = save_outputs(result, 0, photo, OutputPaths.for_target(Path(out) / path.stem), color=color,
                               space=space)
        if not quiet:
            click.echo(f"{path}: mean 68-landmark distance {landmark_error(result, 0):.2f} px; wrote "
                       + ", ".join(str(p) for p in written))
