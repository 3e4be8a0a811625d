"""load_image / find_images / downscale_for_detection on files made in tmp_path."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

from fit3dmm.observe.image import (
    ImageLoadError,
    downscale_for_detection,
    find_images,
    load_image,
    points_to_full_resolution,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
YELLOW, MAGENTA, CYAN, BLACK = (255, 255, 0), (255, 0, 255), (0, 255, 255), (0, 0, 0)


def _blocks(colors: list[list[tuple[int, int, int]]], block: int = 8) -> np.ndarray:
    """An image made of block × block squares of the given colours (rows of columns)."""
    return np.kron(np.asarray(colors, np.uint8), np.ones((block, block, 1), np.uint8))


# Stored image: 2 block rows × 4 block columns (16 × 32 px).
STORED = [[RED, GREEN, BLUE, WHITE], [YELLOW, MAGENTA, CYAN, BLACK]]


def _save_jpeg_with_orientation(path: Path, image: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(path, quality=95, subsampling=0, exif=exif)


def _block_colors(image: np.ndarray, block: int = 8) -> np.ndarray:
    """The colour at the centre of each block, (rows, cols, 3)."""
    c = block // 2
    return image[c::block, c::block].astype(int)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    _save_jpeg_with_orientation(path, _blocks(STORED), orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = load_image(path)
    assert got.shape == expected.shape and got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def test_exif_orientation_6_rotates_clockwise_and_8_counter_clockwise(tmp_path: Path) -> None:
    # 6: the stored image must be turned 90° clockwise to display: its first (top) block row becomes the
    # right-most block column, read top to bottom; 8: 90° counter-clockwise, the top row becomes the left
    # column read bottom to top.
    _save_jpeg_with_orientation(tmp_path / "six.jpg", _blocks(STORED), 6)
    _save_jpeg_with_orientation(tmp_path / "eight.jpg", _blocks(STORED), 8)
    six = load_image(tmp_path / "six.jpg")
    eight = load_image(tmp_path / "eight.jpg")
    assert six.shape == (32, 16, 3) and eight.shape == (32, 16, 3)
    expected_six = [[YELLOW, RED], [MAGENTA, GREEN], [CYAN, BLUE], [BLACK, WHITE]]
    expected_eight = [[WHITE, BLACK], [BLUE, CYAN], [GREEN, MAGENTA], [RED, YELLOW]]
    assert np.abs(_block_colors(six) - np.asarray(expected_six)).max() <= 8
    assert np.abs(_block_colors(eight) - np.asarray(expected_eight)).max() <= 8


GRAY16 = np.array([[0, 1000, 65535], [257, 32768, 128]], np.uint16)
GRAY16_AS_8 = np.array([[0, 4, 255], [1, 128, 0]], np.uint8)  # round(v / 257) by hand


def test_16bit_gray_png_is_scaled_with_rounding(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "g16.png"), GRAY16)
    got = load_image(tmp_path / "g16.png")
    assert got.shape == (2, 3, 3)
    for channel in range(3):
        np.testing.assert_array_equal(got[..., channel], GRAY16_AS_8)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_color_is_scaled_with_rounding(tmp_path: Path, suffix: str) -> None:
    rgb = np.stack([GRAY16, 65535 - GRAY16, np.full_like(GRAY16, 1000)], axis=-1)
    path = tmp_path / f"rgb16{suffix}"
    assert cv2.imwrite(str(path), rgb[..., ::-1])
    got = load_image(path)
    # 65535 − v: 65535, 64535, 0, 65278, 32767, 65407 → /257 = 255, 251.1, 0, 254, 127.5−, 254.5+
    expected_g = np.array([[255, 251, 0], [254, 127, 255]], np.uint8)
    np.testing.assert_array_equal(got[..., 0], GRAY16_AS_8)
    np.testing.assert_array_equal(got[..., 1], expected_g)
    np.testing.assert_array_equal(got[..., 2], np.full((2, 3), 4, np.uint8))


def test_16bit_rgba_png_is_scaled_and_composited(tmp_path: Path) -> None:
    bgra = np.zeros((1, 2, 4), np.uint16)
    bgra[0, 0] = (0, 0, 65535, 65535)  # opaque red
    bgra[0, 1] = (0, 0, 65535, 0)  # fully transparent → white
    assert cv2.imwrite(str(tmp_path / "rgba16.png"), bgra)
    np.testing.assert_array_equal(load_image(tmp_path / "rgba16.png"), [[RED, WHITE]])


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    cmyk = [[(255, 0, 0, 0), (0, 255, 0, 0)], [(0, 0, 0, 128), (100, 0, 0, 100)]]
    arr = np.kron(np.asarray(cmyk, np.uint8), np.ones((8, 8, 1), np.uint8))
    Image.fromarray(arr, mode="CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    got = load_image(tmp_path / "cmyk.jpg")
    # R = 255 (1 − C)(1 − K): cyan, magenta, K = 128 → 127 grey, C = K = 100 → (94, 155, 155)
    expected = [[CYAN, MAGENTA], [(127, 127, 127), (94, 155, 155)]]
    assert got.shape == (16, 16, 3)
    assert np.abs(_block_colors(got) - np.asarray(expected)).max() <= 3


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [0, 0, 0, 128]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    got = load_image(tmp_path / "a.png")
    # 255 · (1 − 128/255) = 127
    np.testing.assert_array_equal(got, [[(200, 100, 50), WHITE, (127, 127, 127)]])


def test_grayscale_bilevel_and_palette(tmp_path: Path) -> None:
    gray = np.array([[0, 10], [200, 255]], np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(load_image(tmp_path / "l.png"), np.repeat(gray[..., None], 3, -1))

    Image.fromarray(gray > 100).save(tmp_path / "bw.png")
    assert Image.open(tmp_path / "bw.png").mode == "1"
    np.testing.assert_array_equal(load_image(tmp_path / "bw.png")[..., 0], [[0, 0], [255, 255]])

    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    pal.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    pal.save(tmp_path / "p.png", transparency=2)
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"),
                                  [[(10, 20, 30), (40, 50, 60)], [WHITE, (40, 50, 60)]])


def _noise_jpeg(size: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_truncated_image_raises(tmp_path: Path, kind: str) -> None:
    data = _noise_jpeg() if kind == "jpeg" else _png_bytes(np.random.default_rng(1).integers(
        0, 256, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.\w+: corrupt or truncated"):
        load_image(path)


def test_truncated_jpeg_raises_even_if_pillow_was_set_to_accept_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = _noise_jpeg()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert Image.open(tmp_path / "cut.jpg").load() is not None  # Pillow alone would accept it
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(tmp_path / "cut.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_intact_noise_jpeg_loads(tmp_path: Path) -> None:
    (tmp_path / "ok.jpg").write_bytes(_noise_jpeg())
    assert load_image(tmp_path / "ok.jpg").shape == (64, 64, 3)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose header announces width × height 8-bit RGB (its pixel data is a few bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"hello, this is not an image\n" * 10, "not an image"),
        (_png_claiming_size(20000, 20000), "too large to decode safely"),
    ],
)
def test_bad_files_raise_one_line_error_naming_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=match) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_heic_gets_a_hint(tmp_path: Path) -> None:
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    with pytest.raises(ImageLoadError, match="HEIC/HEIF is not supported"):
        load_image(tmp_path / "IMG_0001.HEIC")


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_float_tiff_is_an_unsupported_mode(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 2), np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ImageLoadError, match="unsupported mode F"):
        load_image(tmp_path / "f.tif")


# (mode, format) pairs that round-trip; JPEG only for flat images (it is near-exact only when smooth)
COMBOS = [(m, f) for m in ("L", "RGB", "RGBA") for f in ("png", "tiff", "webp")] + [
    ("I;16", "png"), ("I;16", "tiff"), ("L", "jpeg"), ("RGB", "jpeg")]


def _expected_rgb(array: np.ndarray, mode: str) -> np.ndarray:
    """What load_image must return for ``array`` saved in ``mode``, by the documented formulas, as float."""
    if mode == "I;16":
        return np.floor(array / 257.0 + 0.5)[..., None].repeat(3, -1)
    if mode == "RGBA":
        a = array[..., 3:] / 255.0
        return np.floor(array[..., :3] * a + 255.0 * (1.0 - a) + 0.5)
    return (array[..., None] if mode == "L" else array).repeat(3 if mode == "L" else 1, -1).astype(float)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), combo=st.sampled_from(COMBOS), height=st.integers(1, 9), width=st.integers(1, 9))
def test_property_saved_arrays_load_back(tmp_path: Path, data: st.DataObject, combo: tuple[str, str],
                                         height: int, width: int) -> None:
    mode, fmt = combo
    shape = {"L": (height, width), "I;16": (height, width), "RGB": (height, width, 3),
             "RGBA": (height, width, 4)}[mode]
    dtype, top = (np.uint16, 65535) if mode == "I;16" else (np.uint8, 255)
    if fmt == "jpeg":
        array = np.full(shape, data.draw(st.integers(0, top)), dtype)
    else:
        size = int(np.prod(shape))
        array = np.array(data.draw(st.lists(st.integers(0, top), min_size=size, max_size=size)), dtype)
        array = array.reshape(shape)
    path = tmp_path / f"x.{fmt}"
    Image.fromarray(array).save(path, **({"lossless": True} if fmt == "webp" else {}))
    got = load_image(path)
    assert got.shape == (height, width, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(float) - _expected_rgb(array, mode)).max() <= (3 if fmt == "jpeg" else 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(min_size=1, max_size=2000))
def test_fuzz_random_bytes_raise_image_load_error(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(blob)
    with pytest.raises(ImageLoadError):
        load_image(path)


SEEDS = {"jpeg": _noise_jpeg(16), "png": _png_bytes(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(SEEDS)), cut=st.integers(1, 2000),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_fuzz_damaged_files_load_or_raise_image_load_error(tmp_path: Path, kind: str, cut: int,
                                                            flips: list[tuple[int, int]]) -> None:
    data = bytearray(SEEDS[kind][:cut])
    for position, value in flips:
        data[position % len(data)] = value
    path = tmp_path / "damaged.img"
    path.write_bytes(bytes(data))
    try:
        image = load_image(path)
    except ImageLoadError:
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_find_images_directories_patterns_and_files(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.txt", ".hidden.jpg", "sub/d.webp", "sub/e.TIFF"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert find_images([str(tmp_path)]) == [tmp_path / "a.JPG", tmp_path / "b.png"]
    assert find_images([tmp_path], recursive=True) == [
        tmp_path / "a.JPG", tmp_path / "b.png", tmp_path / "sub" / "d.webp", tmp_path / "sub" / "e.TIFF"]
    sub = tmp_path / "sub"
    assert find_images([str(sub / "*")]) == [sub / "d.webp", sub / "e.TIFF"]
    assert find_images([str(tmp_path / "**" / "*.webp")], recursive=True) == [tmp_path / "sub" / "d.webp"]
    # an explicit file is kept whatever its extension; duplicates are dropped
    assert find_images([str(tmp_path / "c.txt"), str(tmp_path / "b.png"), str(tmp_path)]) == [
        tmp_path / "c.txt", tmp_path / "b.png", tmp_path / "a.JPG"]


def test_find_images_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageLoadError, match=f"no images in directory {tmp_path / 'empty'}"):
        find_images([str(tmp_path / "empty")])
    with pytest.raises(ImageLoadError, match="no such file or directory"):
        find_images([str(tmp_path / "nope.jpg")])
    with pytest.raises(ImageLoadError, match="no images match"):
        find_images([str(tmp_path / "*.png")])
    with pytest.raises(ImageLoadError, match="no input images"):
        find_images([])


def test_downscale_for_detection_keeps_pixel_centres() -> None:
    image = np.zeros((60, 100, 3), np.uint8)
    image[20:22, 40:42] = 200  # a 2 × 2 block centred on photo (x, y) = (40.5, 20.5)
    small, scale = downscale_for_detection(image, max_side=50)
    assert scale == 0.5 and small.shape == (30, 50, 3)
    ys, xs = np.nonzero(small[..., 0])
    assert (xs.tolist(), ys.tolist()) == ([20], [10]) and small[10, 20, 0] == 200
    np.testing.assert_allclose(points_to_full_resolution(np.array([20.0, 10.0]), scale), [40.5, 20.5])

    same, one = downscale_for_detection(image, max_side=100)
    assert same is image and one == 1.0
    with pytest.raises(ValueError, match="max_side"):
        downscale_for_detection(image, max_side=0)


def test_crop_of_a_large_photo_blurs_only_what_it_reads():
    """warp_to_crop low-passes only the window the crop reads: the same pixels as blurring the whole photo."""
    from fit3dmm.observe.crop import warp_to_crop

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    for left, top, side in ((300.0, 200.0, 500.0), (-80.0, 650.0, 400.0), (1000.0, -50.0, 600.0)):
        k = side / 112
        crop_to_photo = np.array([[k, 0, left + 0.5 * k - 0.5], [0, k, top + 0.5 * k - 0.5], [0, 0, 1]])
        whole = cv2.warpAffine(cv2.GaussianBlur(photo, (0, 0), sigmaX=0.4 * k), crop_to_photo[:2], (112, 112),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        assert np.array_equal(warp_to_crop(photo, crop_to_photo, 112), whole)
