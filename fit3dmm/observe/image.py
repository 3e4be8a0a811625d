"""Loading photos as (H, W, 3) uint8 RGB arrays, whatever the file holds, and finding them on disk.

Every input is brought to one convention so that detectors and the fitting never see file quirks:

- EXIF orientation is applied (the array is the image as a viewer shows it).
- Grayscale (1-bit, 8-bit, 16-bit) is replicated into three channels.
- Transparency (RGBA, LA, palette with a transparent index) is composited on **white**.
- 16-bit PNG/TIFF is scaled to 8 bits with rounding, ``round(v · 255 / 65535)``.
- CMYK (Adobe-inverted JPEGs included) becomes RGB with ``R = 255 · (1 − C)(1 − K)`` (no ICC profile is
  applied); YCbCr, LAB and HSV are converted by Pillow.
- Floating-point images and 32-bit integer images beyond the 16-bit range are refused (no known scale).

Decoding is strict: a truncated file is an error, never a half-grey image (Pillow's
``ImageFile.LOAD_TRUNCATED_IMAGES`` is held off while decoding), and images with more pixels than Pillow's
``Image.MAX_IMAGE_PIXELS`` are refused before decoding as possible decompression bombs.
"""

from __future__ import annotations

import glob
import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile

from fit3dmm.defaults import DETECT_MAX_SIDE

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

_EXIF_ORIENTATION_TAG = 0x0112
_GLOB_CHARS = frozenset("*?[")
_HEIF = frozenset({".heic", ".heif"})


class ImageLoadError(ValueError):
    """A photo could not be loaded (or found); the message names the file and the cause on one line."""


def _fail(path: Path | str, cause: str) -> ImageLoadError:
    return ImageLoadError(f"cannot load image {path}: {' '.join(str(cause).split())}")


@contextmanager
def _strict_pillow() -> Iterator[None]:
    """Decode with truncated files rejected and the decompression-bomb warning raised as an error."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as it is displayed: (H, W, 3) uint8 RGB, conventions in the module docstring.

    Raises:
        ImageLoadError: missing or unreadable path, a directory, an empty file, not an image, a truncated
            or corrupt image, an unsupported pixel mode, or an image too large to decode safely.
    """
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "it is a directory")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as exc:
        raise _fail(path, exc.strerror or exc) from exc
    if not data:
        raise _fail(path, "the file is empty (0 bytes)")
    try:
        with _strict_pillow():
            pil = Image.open(io.BytesIO(data))  # checks the size against Image.MAX_IMAGE_PIXELS
            sixteen_bit_color = _is_16bit_color(pil)
            pil.load()
            orientation = pil.getexif().get(_EXIF_ORIENTATION_TAG, 1)
            rgb = _rgb16_with_cv2(data, pil) if sixteen_bit_color else _to_rgb8(pil)
    except ImageLoadError as exc:
        raise _fail(path, exc) from None
    except Image.UnidentifiedImageError:
        hint = "; HEIC/HEIF is not supported, convert it to JPEG" if path.suffix.lower() in _HEIF else ""
        raise _fail(path, f"not an image file (unknown format){hint}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail(path, f"too large to decode safely: {exc}") from None
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, struct.error, EOFError...
        raise _fail(path, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from exc
    return np.ascontiguousarray(_apply_orientation(rgb, orientation))


def _to_rgb8(pil: Image.Image) -> np.ndarray:
    """A decoded Pillow image → (H, W, 3) uint8 RGB, before orientation."""
    mode = pil.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(pil)
        if mode == "I" and (values.min() < 0 or values.max() > 65535):
            raise ImageLoadError("unsupported mode I (32-bit integer values outside the 16-bit range)")
        return np.repeat(_scale16(values)[..., None], 3, axis=-1)
    if mode == "F":
        raise ImageLoadError("unsupported mode F (floating-point pixels have no known scale)")
    if mode in ("1", "L"):
        return np.repeat(np.asarray(pil.convert("L"))[..., None], 3, axis=-1)
    transparent = "A" in mode or "a" in mode or (mode == "P" and "transparency" in pil.info)
    target = "RGBA" if transparent else "RGB"
    try:
        converted = pil if mode == target else pil.convert(target)
    except ValueError as exc:
        raise ImageLoadError(f"unsupported mode {mode}") from exc
    array = np.asarray(converted)
    return _on_white(array) if transparent else array


def _is_16bit_color(pil: Image.Image) -> bool:
    """Whether an opened, not yet decoded image holds 16-bit colour that Pillow would cut to 8 bits.

    Pillow decodes 16-bit RGB(A) PNG/TIFF into 8-bit modes by keeping the high byte; only the raw mode of
    its tiles (e.g. ``"RGB;16B"``) tells.
    """
    if pil.mode not in ("RGB", "RGBA"):
        return False
    for tile in pil.tile:
        args = tile[3]
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def _scale16(values: np.ndarray) -> np.ndarray:
    """16-bit values (any integer dtype, in 0..65535) → uint8 with rounding: round(v / 257)."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _rgb16_with_cv2(data: bytes, pil: Image.Image) -> np.ndarray:
    """Decode 16-bit colour with OpenCV (the file was fully decoded by Pillow first, so it is not
    truncated) → (H, W, 3) uint8 RGB with rounding, alpha composited on white."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.shape[:2] != (pil.height, pil.width) or array.dtype != np.uint16:
        raise ImageLoadError(f"could not decode its 16-bit {pil.mode} pixels")
    if array.ndim == 2:
        return np.repeat(_scale16(array)[..., None], 3, axis=-1)
    code = cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB
    rgb = _scale16(cv2.cvtColor(array, code))
    return _on_white(rgb) if rgb.shape[2] == 4 else rgb


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA composited on a white background → (H, W, 3) uint8."""
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply the EXIF orientation (1..8) to an (H, W, C) array; unknown values leave it unchanged."""
    if orientation == 2:
        return image[:, ::-1]
    if orientation == 3:
        return image[::-1, ::-1]
    if orientation == 4:
        return image[::-1]
    if orientation == 5:
        return image.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(image, k=-1)
    if orientation == 7:
        return image[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(image, k=1)
    return image


def downscale_for_detection(image: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Shrink a large (H, W, C) photo so that its longer side is at most ``max_side`` px.

    Returns ``(small, scale)`` with ``scale ≤ 1`` the same along both axes; images already small enough are
    returned as they are with ``scale = 1``.  With pixel centres at integer coordinates a photo point ``p``
    lies at ``(p + 0.5) · scale − 0.5`` in ``small``; :func:`points_to_full_resolution` maps back.
    Area averaging (``cv2.INTER_AREA``) avoids aliasing.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) array, got {shape}")
    if max_side < 1:
        raise ValueError(f"max_side must be ≥ 1, got {max_side}")
    longest = max(image.shape[:2])
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return small, scale


def points_to_full_resolution(points: np.ndarray, scale: float) -> np.ndarray:
    """Map (..., 2) pixel coordinates in a :func:`downscale_for_detection` image back to the photo."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return (np.asarray(points, dtype=np.float64) + 0.5) / scale - 0.5


def _is_image_file(path: Path) -> bool:
    """An existing regular file, not hidden (skips macOS ``._x.jpg`` forks), with an image extension."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(inputs: Sequence[str | Path], recursive: bool = False) -> list[Path]:
    """Expand files, directories and glob patterns into a list of image paths.

    A file named explicitly is kept whatever its extension (loading it says whether it is an image).  A
    directory contributes its image files (extensions in :data:`IMAGE_EXTENSIONS`, any case, hidden files
    skipped), sorted by path, descending into sub-directories when ``recursive``.  A glob pattern
    (``*``, ``?``, ``[``; ``**`` when ``recursive``) contributes its sorted matching image files.  Duplicates
    are dropped, the first occurrence kept.

    Raises:
        ImageLoadError: no inputs, a path that does not exist, or a directory or pattern with no images.
    """
    if isinstance(inputs, (str, Path)):
        raise TypeError("inputs must be a list of paths or patterns, not a single string")
    if not inputs:
        raise ImageLoadError("no input images given")
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            candidates = path.rglob("*") if recursive else path.iterdir()
            images = sorted(p for p in candidates if _is_image_file(p))
            if not images:
                where = " or its sub-directories" if recursive else ""
                extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise ImageLoadError(f"no images in directory {path}{where} (extensions: {extensions})")
            found.extend(images)
        elif _GLOB_CHARS & set(str(item)):
            matches = (Path(p) for p in glob.glob(str(item), recursive=recursive))
            images = sorted(p for p in matches if _is_image_file(p))
            if not images:
                raise ImageLoadError(f"no images match the pattern {item}")
            found.extend(images)
        else:
            raise ImageLoadError(f"no such file or directory: {path}")
    return list(dict.fromkeys(found))
