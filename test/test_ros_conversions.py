"""Image conversions without ROS: every camera encoding, every bad layout, compressed frames,
and real frames from the shared data (KITTI mono8 at an odd width, CamVid RGB)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from bevanet_ros.conversions import (
    RAW_ENCODINGS,
    ImageDecodeError,
    check_raw_layout,
    compressed_msg_to_rgb,
    compressed_to_rgb,
    imgmsg_to_rgb,
    raw_to_rgb,
    rgb_to_raw,
)


class FakeImage:
    """Plain object with sensor_msgs/Image's fields (the decoders are duck-typed)."""

    def __init__(self, rgb: np.ndarray, encoding: str):
        self.height, self.width = rgb.shape[:2]
        self.encoding = encoding
        self.data, self.step = rgb_to_raw(rgb, encoding)
        self.is_bigendian = 0


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img[:, 1::2] = img[:, 0::2]  # equal pixel pairs: 4:2:2 chroma loses nothing
    return img


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_lossless_encodings_round_trip(rgb, encoding):
    np.testing.assert_array_equal(imgmsg_to_rgb(FakeImage(rgb, encoding)), rgb)


def test_mono8_replicates_the_channel(rgb):
    out = imgmsg_to_rgb(FakeImage(rgb, "mono8"))
    assert out.shape == rgb.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_round_trip_within_rounding(rgb, encoding):
    out = imgmsg_to_rgb(FakeImage(rgb, encoding))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 3


def test_yuv422_byte_orders_differ():
    """'yuv422' is UYVY and 'yuv422_yuy2' is YUYV in ROS: the same bytes decode differently."""
    data = bytes([128, 200, 128, 60] * 4)  # UYVY: U=128 Y=200 V=128 Y=60
    uyvy = raw_to_rgb("yuv422", 1, 8, 16, data)
    yuyv = raw_to_rgb("yuyv", 1, 8, 16, data)
    assert uyvy[0, 0, 0] > 200 and uyvy[0, 1, 0] < 70  # grey levels from the Y bytes
    assert not np.array_equal(uyvy, yuyv)


def test_padded_rows_are_respected(rgb):
    data, step = rgb_to_raw(rgb, "bgr8")
    h = rgb.shape[0]
    padded = b"".join(data[r * step : (r + 1) * step] + b"\xee" * 8 for r in range(h))
    out = raw_to_rgb("bgr8", h, rgb.shape[1], step + 8, padded)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize(
    "args, kind, words",
    [
        (("rgb16", 4, 4, 24, 96), "unknown_encoding", ["rgb16", "supported"]),
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


def test_non_byte_data_is_rejected():
    with pytest.raises(ImageDecodeError):
        raw_to_rgb("mono8", 1, 2, 2, [1, 1000])


def _encode(rgb: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def test_png_and_jpeg_decode(rgb):
    np.testing.assert_array_equal(compressed_to_rgb("png", _encode(rgb, "PNG")), rgb)
    smooth = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    out = compressed_to_rgb("jpeg", _encode(smooth, "JPEG"))
    assert out.shape == (16, 16, 3) and np.abs(out.astype(int) - smooth).max() <= 4


def test_grey_png_becomes_rgb():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = compressed_to_rgb("png", _encode(grey, "PNG"))
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out[..., 1], grey)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0garbage", b"\x89PNG\r\n\x1a\nxx"])
def test_corrupt_compressed_is_named(data):
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_rgb("jpeg", data)
    assert err.value.kind in ("corrupt_compressed", "zero_size")
    assert "jpeg" in str(err.value) or "no data" in str(err.value)


def test_truncated_jpeg_is_rejected():
    rng = np.random.default_rng(1)
    jpeg = _encode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")
    for cut in (0.2, 0.6, 0.95):
        with pytest.raises(ImageDecodeError):
            compressed_to_rgb("jpeg", jpeg[: int(len(jpeg) * cut)])


def test_message_wrappers_reject_wrong_objects():
    with pytest.raises(ImageDecodeError) as err:
        imgmsg_to_rgb(object())
    assert err.value.kind == "bad_message"
    with pytest.raises(ImageDecodeError):
        compressed_msg_to_rgb(object())


def test_real_kitti_mono8_frame_at_odd_width(shared_data):
    path = shared_data / "kitti_gray_seq" / "000000.png"
    if not path.is_file():
        pytest.skip(f"missing {path}")
    grey = np.asarray(PILImage.open(path))
    assert grey.ndim == 2 and grey.shape[1] % 8 != 0
    msg = FakeImage(np.repeat(grey[..., None], 3, -1), "mono8")
    assert msg.step == grey.shape[1]
    out = imgmsg_to_rgb(msg)
    np.testing.assert_array_equal(out[..., 0], grey)
    # the same frame as a PNG off a compressed topic
    np.testing.assert_array_equal(compressed_to_rgb("png", path.read_bytes())[..., 2], grey)


def test_real_camvid_frame_all_encodings(shared_data):
    val = sorted((shared_data / "camvid" / "val").glob("*.png"))
    if not val:
        pytest.skip(f"no CamVid val images under {shared_data / 'camvid' / 'val'}")
    rgb = np.asarray(PILImage.open(val[0]).convert("RGB"))
    for enc in RAW_ENCODINGS:
        out = imgmsg_to_rgb(FakeImage(rgb, enc))
        assert out.shape == rgb.shape, enc
        if enc in ("rgb8", "bgr8", "rgba8", "bgra8"):
            np.testing.assert_array_equal(out, rgb)


def test_array_to_imgmsg_when_sensor_msgs_exists():
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2) is not installed")
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from bevanet_ros.conversions import array_to_imgmsg

    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    msg = array_to_imgmsg(mask, "mono8", header)
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (3, 4, 4, "mono8")
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    assert bytes(msg.data) == mask.tobytes()
    color = np.zeros((3, 4, 3), np.uint8)
    assert array_to_imgmsg(color, "rgb8").step == 12
    with pytest.raises(ValueError, match="does not match"):
        array_to_imgmsg(color, "mono8")
    with pytest.raises(ValueError, match="uint8"):
        array_to_imgmsg(mask.astype(np.float32), "mono8")
