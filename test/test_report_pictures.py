"""The pictures a person reads: the montage has column titles and a colour legend of the class
names, the overlay video carries the same legend under every frame."""

from __future__ import annotations

import numpy as np
import pytest

from bevanet_core.bags import report
from bevanet_core.data.classes import CAMVID_CLASSES, CAMVID_PALETTE, colorize

cv2 = pytest.importorskip("cv2")


def _colorize(mask: np.ndarray) -> np.ndarray:
    return colorize(mask, CAMVID_PALETTE)


def _samples(n: int, with_label: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    grey = np.full((360, 480, 3), 90, np.uint8)
    return [
        {
            "rgb": grey,
            "overlay": grey,
            "label": rng.integers(0, 11, (360, 480), dtype=np.uint8) if with_label else None,
        }
        for _ in range(n)
    ]


def _has_swatch(image: np.ndarray, color) -> bool:
    """A filled swatch of `color`: at least a 10x10 block of exactly that colour."""
    hit = np.all(image == np.asarray(color, np.uint8), axis=2).astype(np.uint8)
    return bool(cv2.erode(hit, np.ones((10, 10), np.uint8)).any())


def test_legend_is_built_from_the_models_colours_and_names():
    legend = report.Legend.of(CAMVID_CLASSES, _colorize)
    assert legend.names == tuple(CAMVID_CLASSES)
    assert [list(c) for c in legend.colors] == CAMVID_PALETTE
    wide, narrow = legend.strip(1440), legend.strip(300)
    assert wide.shape[1] == 1440 and narrow.shape[1] == 300
    assert narrow.shape[0] > wide.shape[0], "a narrow strip wraps the names onto more lines"
    for strip in (wide, narrow):
        for color in CAMVID_PALETTE:
            assert _has_swatch(strip, color), color
        # names are drawn: light text pixels besides the swatches' outlines
        assert (strip.min(axis=2) > 200).sum() > 500


@pytest.mark.parametrize("with_label, columns", [(True, 3), (False, 2)])
def test_montage_has_column_titles_rows_and_legend(with_label, columns):
    samples = _samples(2, with_label)
    plain = report.montage(samples, _colorize)
    image = report.montage(samples, _colorize, CAMVID_CLASSES)
    tile_h = 360  # 480 wide tiles of 480x360 frames
    assert plain.shape[1] == image.shape[1] == 480 * columns
    header = plain[:26]
    assert plain.shape[0] == 26 + 2 * (tile_h + 2)
    # one title per column: light text in each column of the header row
    for c in range(columns):
        assert (header[:, c * 480 : (c + 1) * 480].min(axis=2) > 200).sum() > 50, c
    strip = image[plain.shape[0] :]
    assert np.array_equal(image[: plain.shape[0]], plain)
    assert np.array_equal(strip, report.Legend.of(CAMVID_CLASSES, _colorize).strip(image.shape[1]))
    assert report.montage([], _colorize, CAMVID_CLASSES) is None


def test_write_montage_writes_the_legend(tmp_path):
    path = report.write_montage(_samples(1, True), _colorize, tmp_path / "m.png", CAMVID_CLASSES)
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    bottom = image[26 + 362 :]
    for color in CAMVID_PALETTE:
        assert _has_swatch(bottom, color), color


def test_video_frames_carry_the_legend(tmp_path):
    legend = report.Legend.of(CAMVID_CLASSES, _colorize)
    sink = report.VideoSink(tmp_path / "v.mp4", fps=10, legend=legend)
    frame = np.full((240, 320, 3), 90, np.uint8)
    for _ in range(3):
        sink.write(frame)
    path = sink.close()
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read()
    frames = 1
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert ok and frames == 3
    strip = legend.strip(320)
    assert first.shape[:2] == (240 + strip.shape[0], 320)
    # lossy video: the legend region looks like the strip, the frame region like the frame
    got = cv2.cvtColor(first, cv2.COLOR_BGR2RGB).astype(float)
    assert np.abs(got[240:] - strip).mean() < 12
    assert np.abs(got[:240] - 90).mean() < 6
