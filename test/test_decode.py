"""The one camera-message decoder (bevanet_core.serving.decode), without ROS: every encoding
against pixel values written by hand or made by OpenCV / Pillow, every bad layout, compressed
frames, labels, and real frames from the shared data (KITTI mono8 at an odd width, CamVid RGB)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from frames import ENCODINGS, rgb_to_raw
from PIL import Image as PILImage

from bevanet_core.serving.decode import (
    RAW_ENCODINGS,
    ImageDecodeError,
    check_raw_layout,
    compressed_to_rgb,
    image_to_array,
    image_to_rgb,
    message_to_label,
    message_to_rgb,
)


def raw(encoding: str, height: int, width: int, data, step: int | None = None, big=0):
    """An object with sensor_msgs/Image's fields (the decoder is duck-typed)."""
    data = bytes(data) if not isinstance(data, np.ndarray) else data.tobytes()
    step = len(data) // height if step is None else step
    return SimpleNamespace(encoding=encoding, height=height, width=width, step=step, data=data, is_bigendian=big)


def compressed(data: bytes, fmt: str = "jpeg"):
    return SimpleNamespace(format=fmt, data=data)


# --------------------------------------------------------------- values written by hand
# one 1x2 image: a red-ish pixel (200, 10, 30) and a blue-ish one (5, 60, 250)
PIXELS = [[200, 10, 30], [5, 60, 250]]
HAND = {
    "rgb8": [200, 10, 30, 5, 60, 250],
    "bgr8": [30, 10, 200, 250, 60, 5],
    "rgba8": [200, 10, 30, 7, 5, 60, 250, 9],
    "bgra8": [30, 10, 200, 7, 250, 60, 5, 9],
    "8UC3": [30, 10, 200, 250, 60, 5],  # OpenCV's BGR convention
    "8UC4": [30, 10, 200, 7, 250, 60, 5, 9],
}


@pytest.mark.parametrize("encoding", sorted(HAND))
def test_colour_encodings_against_hand_written_bytes(encoding):
    out = image_to_rgb(raw(encoding, 1, 2, HAND[encoding]))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.tolist() == [PIXELS]


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_grey_is_replicated_exactly(encoding):
    out = image_to_rgb(raw(encoding, 2, 2, [0, 17, 128, 255]))
    assert out.tolist() == [[[0] * 3, [17] * 3], [[128] * 3, [255] * 3]]


@pytest.mark.parametrize("encoding, big", [("mono16", 0), ("16UC1", 0), ("mono16", 1)])
def test_16_bit_grey_keeps_the_high_byte_in_either_byte_order(encoding, big):
    values = [0x1234, 0xABCD]  # high bytes 0x12 = 18 and 0xAB = 171
    data = b"".join(v.to_bytes(2, "big" if big else "little") for v in values)
    out = image_to_rgb(raw(encoding, 1, 2, data, big=big))
    assert out.tolist() == [[[18] * 3, [171] * 3]]
    assert image_to_array(raw(encoding, 1, 2, data, big=big)).tolist() == [values]


def test_16_bit_colour_orders():
    rgb16 = b"".join(v.to_bytes(2, "little") for v in (0xC800, 0x0A00, 0x1E00))  # 200,10,30
    bgr16 = b"".join(v.to_bytes(2, "little") for v in (0x1E00, 0x0A00, 0xC800))
    assert image_to_rgb(raw("rgb16", 1, 1, rgb16)).tolist() == [[[200, 10, 30]]]
    assert image_to_rgb(raw("bgr16", 1, 1, bgr16)).tolist() == [[[200, 10, 30]]]


def _bt601(y: int, u: int = 128, v: int = 128) -> tuple[int, int, int]:
    """Limited-range BT.601 YUV -> RGB, the formulas written out."""
    c, d, e = y - 16, u - 128, v - 128
    r = 1.164 * c + 1.596 * e
    g = 1.164 * c - 0.392 * d - 0.813 * e
    b = 1.164 * c + 2.017 * d
    return tuple(int(np.clip(round(x), 0, 255)) for x in (r, g, b))


@pytest.mark.parametrize(
    "encoding, pair",
    [
        # U Y0 V Y1 for UYVY ("yuv422" in ROS), Y0 U Y1 V for YUYV ("yuv422_yuy2")
        ("yuv422", [90, 200, 240, 60]),
        ("uyvy", [90, 200, 240, 60]),
        ("yuv422_yuy2", [200, 90, 60, 240]),
        ("yuyv", [200, 90, 60, 240]),
    ],
)
def test_yuv422_byte_orders_against_the_bt601_formulas(encoding, pair):
    out = image_to_rgb(raw(encoding, 1, 2, pair)).astype(int)
    expected = np.array([[_bt601(200, 90, 240), _bt601(60, 90, 240)]])
    assert np.abs(out - expected).max() <= 2, (out.tolist(), expected.tolist())


@pytest.mark.parametrize(
    "encoding, colour_at",
    [
        # where the red, green and blue samples sit in each 2x2 tile of the mosaic
        ("bayer_rggb8", {"r": (0, 0), "g": (0, 1), "b": (1, 1)}),
        ("bayer_bggr8", {"r": (1, 1), "g": (0, 1), "b": (0, 0)}),
        ("bayer_gbrg8", {"r": (1, 0), "g": (0, 0), "b": (0, 1)}),
        ("bayer_grbg8", {"r": (0, 1), "g": (0, 0), "b": (1, 0)}),
    ],
)
def test_bayer_patterns_on_a_flat_colour(encoding, colour_at):
    """A uniform (200, 90, 20) scene seen through each mosaic demosaics to that colour."""
    colour = {"r": 200, "g": 90, "b": 20}
    tile = np.full((2, 2), colour["g"], np.uint8)  # the two greens
    for channel in ("r", "b"):
        tile[colour_at[channel]] = colour[channel]
    mosaic = np.tile(tile, (4, 4))
    out = image_to_rgb(raw(encoding, 8, 8, mosaic))
    assert out[2:6, 2:6].reshape(-1, 3).tolist() == [[200, 90, 20]] * 16


# --------------------------------------------------------------- OpenCV as the oracle
@pytest.fixture
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_opencv_encoded_colour_frames_decode_exactly(frame, encoding):
    data, step = rgb_to_raw(frame, encoding)
    np.testing.assert_array_equal(image_to_rgb(raw(encoding, 12, 16, data, step)), frame)


def test_mono8_is_opencvs_grey(frame):
    data, step = rgb_to_raw(frame, "mono8")
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(image_to_rgb(raw("mono8", 12, 16, data, step)), np.dstack([grey] * 3))


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_frames_match_opencvs_conversion(frame, encoding):
    frame[:, 1::2] = frame[:, 0::2]  # equal pixel pairs: 4:2:2 chroma loses nothing
    data, step = rgb_to_raw(frame, encoding)
    out = image_to_rgb(raw(encoding, 12, 16, data, step)).astype(int)
    assert np.abs(out - frame.astype(int)).max() <= 3


def test_padded_rows_and_an_unpadded_last_row(frame):
    data, step = rgb_to_raw(frame, "bgr8")
    rows = [data[r * step : (r + 1) * step] for r in range(12)]
    padded = b"".join(r + b"\xee" * 8 for r in rows)
    np.testing.assert_array_equal(image_to_rgb(raw("bgr8", 12, 16, padded, step + 8)), frame)
    short = padded[:-8]  # some drivers leave the padding off the last row
    np.testing.assert_array_equal(image_to_rgb(raw("bgr8", 12, 16, short, step + 8)), frame)


# --------------------------------------------------------------- problems, named
@pytest.mark.parametrize(
    "args, kind, words",
    [
        (("rgb32", 4, 4, 48, 192), "unknown_encoding", ["rgb32", "supported"]),
        (("RGB8", 4, 4, 12, 48), "unknown_encoding", ["RGB8"]),
        (("rgb8", 0, 4, 12, 0), "zero_size", ["zero size"]),
        (("rgb8", 4, 0, 12, 48), "zero_size", ["zero size"]),
        (("rgb8", 4, 4, 11, 44), "step_mismatch", ["step 11", "12"]),
        (("rgb8", 4, 4, 12, 47), "data_length", ["47 bytes", "48"]),
        (("mono8", 4, 4, 4, 17), "data_length", ["17 bytes"]),
        (("yuyv", 4, 5, 10, 40), "odd_width", ["even"]),
        (("rgb8", 100000, 100000, 300000, 10), "too_large", ["exceeds"]),
    ],
)
def test_bad_layouts_name_the_problem(args, kind, words):
    with pytest.raises(ImageDecodeError) as err:
        check_raw_layout(*args)
    assert err.value.kind == kind
    for word in words:
        assert word in str(err.value)


def test_non_byte_data_and_wrong_objects_are_rejected():
    bad = SimpleNamespace(encoding="mono8", height=1, width=2, step=2, data=[1, 1000])
    with pytest.raises(ImageDecodeError) as err:
        image_to_rgb(bad)
    assert err.value.kind == "bad_data"
    with pytest.raises(ImageDecodeError) as err:
        image_to_rgb(object())
    assert err.value.kind == "bad_message"
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_rgb(object())
    assert err.value.kind == "bad_message"


# --------------------------------------------------------------- compressed frames
def _encode(image: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(image).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_png_is_lossless_and_jpeg_decodes_as_pillow_decodes_it(frame):
    np.testing.assert_array_equal(compressed_to_rgb(compressed(_encode(frame, "PNG"), "png")), frame)
    jpeg = _encode(frame, "JPEG", quality=80)
    oracle = np.asarray(PILImage.open(io.BytesIO(jpeg)).convert("RGB"))
    np.testing.assert_array_equal(compressed_to_rgb(compressed(jpeg)), oracle)
    # and OpenCV's encoder (what bags and cameras produce), in the right channel order
    smooth = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    ok, buf = cv2.imencode(".jpg", smooth[:, :, ::-1])
    out = compressed_to_rgb(compressed(buf.tobytes())).astype(int)
    assert ok and np.abs(out - smooth).max() <= 4


def test_grey_and_16_bit_pngs_become_rgb():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.testing.assert_array_equal(compressed_to_rgb(compressed(_encode(grey, "PNG"), "png")), np.dstack([grey] * 3))
    deep = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    ok, buf = cv2.imencode(".png", deep)
    out = compressed_to_rgb(compressed(buf.tobytes(), "png"))
    np.testing.assert_array_equal(out[..., 0], (deep >> 8).astype(np.uint8))


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0garbage", b"\x89PNG\r\n\x1a\nxx"])
def test_corrupt_compressed_is_named(data):
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_rgb(compressed(data))
    assert err.value.kind in ("corrupt_compressed", "zero_size")
    assert "jpeg" in str(err.value) or "no data" in str(err.value)


def test_truncated_jpeg_is_rejected():
    rng = np.random.default_rng(1)
    jpeg = _encode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")
    for cut in (0.2, 0.6, 0.95):
        with pytest.raises(ImageDecodeError):
            compressed_to_rgb(compressed(jpeg[: int(len(jpeg) * cut)]))


def test_message_to_rgb_dispatches_on_the_fields(frame):
    png = compressed(_encode(frame, "PNG"), "png")
    data, step = rgb_to_raw(frame, "bgr8")
    np.testing.assert_array_equal(message_to_rgb(png), frame)
    np.testing.assert_array_equal(message_to_rgb(raw("bgr8", 12, 16, data, step)), frame)


# --------------------------------------------------------------- labels
def test_labels_are_mono8_or_lossless_grey():
    label = np.random.default_rng(2).integers(0, 11, (6, 9), dtype=np.uint8)
    np.testing.assert_array_equal(message_to_label(raw("mono8", 6, 9, label)), label)
    np.testing.assert_array_equal(message_to_label(compressed(_encode(label, "PNG"), "png")), label)
    for bad in (raw("rgb8", 1, 1, [1, 2, 3]), compressed(_encode(label, "JPEG"), "jpeg")):
        with pytest.raises(ImageDecodeError) as err:
            message_to_label(bad)
        assert err.value.kind == "label_encoding"
    colour = compressed(_encode(np.zeros((4, 4, 3), np.uint8), "PNG"), "png")
    with pytest.raises(ImageDecodeError, match="single-channel"):
        message_to_label(colour)


# --------------------------------------------------------------- real frames
def test_real_kitti_mono8_frame_at_odd_width(shared_data):
    path = shared_data / "kitti_gray_seq" / "000000.png"
    if not path.is_file():
        pytest.skip(f"missing {path}")
    grey = np.asarray(PILImage.open(path))
    assert grey.ndim == 2 and grey.shape[1] % 8 != 0
    out = image_to_rgb(raw("mono8", *grey.shape, grey))
    np.testing.assert_array_equal(out, np.dstack([grey] * 3))
    # the same frame as a PNG off a compressed topic
    np.testing.assert_array_equal(compressed_to_rgb(compressed(path.read_bytes(), "png")), out)


def test_real_camvid_frame_in_every_test_encoding(shared_data):
    val = sorted((shared_data / "camvid" / "val").glob("*.png"))
    if not val:
        pytest.skip(f"no CamVid val images under {shared_data / 'camvid' / 'val'}")
    rgb = np.asarray(PILImage.open(val[0]).convert("RGB"))
    h, w = rgb.shape[:2]
    for enc in ENCODINGS:
        assert enc in RAW_ENCODINGS
        data, step = rgb_to_raw(rgb, enc)
        out = image_to_rgb(raw(enc, h, w, data, step))
        if enc in ("rgb8", "bgr8", "rgba8", "bgra8"):
            np.testing.assert_array_equal(out, rgb)
        elif enc == "mono8":
            np.testing.assert_array_equal(out[..., 0], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        else:  # 4:2:2 halves the chroma: close to the frame, not equal
            assert np.abs(out.astype(int) - rgb).mean() < 6, enc
