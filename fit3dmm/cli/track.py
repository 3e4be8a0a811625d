"""``fit3dmm track``: a video or image sequence → per-frame ARKit weights and head pose, animation files."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from fit3dmm import defaults
from fit3dmm.cli.common import device_option, fail, loss_options, model_option, use_threads


@click.command()
@click.argument("input", metavar="INPUT")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (blendshapes.csv, live_link_face.csv, identity.json, track.json, curves.png, "
                   "overlay.mp4, animation.glb).")
@click.option("--start", default=0, show_default=True, type=click.IntRange(0), help="First input frame.")
@click.option("--end", default=None, type=click.IntRange(1), help="Input frame to stop before (default: the end).")
@click.option("--step", default=1, show_default=True, type=click.IntRange(1), help="Take every STEP-th frame.")
@click.option("--fps", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Frames per second of a frame folder or glob (default 30; videos give their own).")
@loss_options
@model_option
@click.option("--keyframes", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Frames the identity is fitted on, jointly (chosen for pose and expression variety).")
@click.option("--smoothing", default=None, type=click.FloatRange(0),
              help="Weight of the pull of each frame's expression towards the previous frame's "
                   "(default: the measured one, see benchmarks/README.md).")
@click.option("--iterations", default=None, type=click.IntRange(0, 1000),
              help="Levenberg-Marquardt steps per frame.")
@click.option("--fill", is_flag=True, help="Interpolate frames without a face from their neighbours.")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Write overlay.mp4.")
@click.option("--meshes", is_flag=True, help="Also write one OBJ per frame into OUT/meshes/.")
@click.option("--overwrite", is_flag=True, help="Replace a track of other settings in OUT.")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
def track(input, out, start, end, step, fps, losses, weights, model, keyframes, smoothing, iterations, fill,
          overlay, meshes, overwrite, device, threads, quiet) -> None:
    """Track the face of INPUT (a video file, a folder of frames or a glob) with one identity; rerun the same
    command to resume after an interruption."""
    if end is not None and end <= start:
        fail(f"--end {end} must be after --start {start}")
    from fit3dmm.api.tracking import TrackInterrupted, TrackOptions
    from fit3dmm.api.tracking import track as run_track

    use_threads(threads)
    options = TrackOptions(start=start, end=end, step=step, fps=fps, keyframes=keyframes, fill=fill, overlay=overlay,
                           meshes=meshes)
    if smoothing is not None:
        options = replace(options, expression_smoothing=smoothing)
    if iterations is not None:
        options = replace(options, iterations=iterations)
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=1, desc="tracking", unit="frame", dynamic_ncols=True)

    def report(done: int, total: int) -> None:
        bar.total, bar.n = max(total, done), done
        bar.refresh()

    try:
        summary = run_track(input, out, model=model, losses=losses or defaults.TRACK_LOSSES, weights=weights,
                            options=options, device=device, overwrite=overwrite,
                            progress=report if bar is not None else None)
    except TrackInterrupted as stop:
        click.echo(f"interrupted: wrote the files for {len(stop.summary.frames)} frames into {out}; rerun the "
                   "same command to resume", err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()
    if not quiet and not summary.timings:
        click.echo(f"{out} already holds this track ({len(summary.frames)} frames); --overwrite redoes it")
    elif not quiet:
        frames = summary.frames
        gaps = sum(f.status == "no_face" for f in frames)
        speed = summary.timings.get("frames_tracked_here", 0) / max(summary.timings.get("track", 0), 1e-9)
        click.echo(f"{len(frames)} frames: {summary.tracked} tracked, {gaps} without a face"
                   + (f", resumed after {summary.resumed_from}" if summary.resumed_from else "")
                   + f"; identity from keyframes {summary.identity.keyframes}; {speed:.1f} frames/s tracking")
        click.echo("wrote " + ", ".join(p.name for p in summary.files) + f" into {out}")

