"""Hard-frame mining on a labelled CamVid bag: the files it writes, and that the frames it picks
are ones the shipped model gets wrong more often than the bag's average.

The shipped model trained on every labelled CamVid frame, so the bag mixes frames of val with
upside-down copies of others (a camera mounted upside down, which its training never showed):
frames it gets wrong that a labelled bag can score."""

from __future__ import annotations

import csv
import json

import cv2
import pytest

from bevanet_core.cli import make_bag
from bevanet_core.cli.mine import main as mine_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def camvid_bag(tmp_path_factory, shared_data):
    """24 labelled frames of CamVid val (drive 0016E5, every 4th frame), every other one upside
    down with its label, as an MCAP bag."""
    root = tmp_path_factory.mktemp("bag")
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    src = shared_data / "camvid"
    pairs = [line.split() for line in (src / "val.lst").read_text().splitlines()][::4][:24]
    for k, (image, label) in enumerate(pairs):
        rgb = cv2.imread(str(src / image), cv2.IMREAD_COLOR)
        index = cv2.imread(str(src / label), cv2.IMREAD_UNCHANGED)
        if k % 2:
            rgb, index = rgb[::-1], index[::-1]
        cv2.imwrite(str(images / f"{k:03d}.png"), rgb)
        cv2.imwrite(str(labels / f"{k:03d}.png"), index)
    out = root / "camvid_val"
    argv = ["--images", str(images), "--labels", str(labels), "--void-label", "11", "--out", str(out)]
    assert make_bag.main(argv) == 0
    return out


def test_mine_writes_the_least_sure_frames_and_they_score_lower(camvid_bag, tmp_path, capsys):
    out = tmp_path / "mined"
    assert mine_main([str(camvid_bag), "--count", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "the 5 most doubtful" in printed
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 24
    picked = sorted((r for r in rows if r["picked"] == "1"), key=lambda r: int(r["rank"]))
    assert len(picked) == 5
    doubts = sorted((float(r["doubt"]) for r in rows), reverse=True)
    assert [float(r["doubt"]) for r in picked] == doubts[:5]
    for r in picked:
        image = cv2.imread(str(out / r["file"]))
        assert image is not None and image.shape == (360, 480, 3)
        assert r["file"] == f"images/{r['stamp_ns']}.png"
        assert 0 <= float(r["mean_confidence"]) <= 1 and 0 <= float(r["flip_disagreement"]) <= 1
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 4 * 320 and sheet.shape[0] > 2 * 240
    summary = json.loads((out / "mined.json").read_text())
    assert summary["label_topic"] == "/camera/labels" and summary["frames"] == 24
    assert [p["stamp_ns"] for p in summary["picked"]] == [int(r["stamp_ns"]) for r in picked]
    # the point of it: the frames it is least sure of are the ones it gets wrong
    assert all(r["miou"] for r in rows)
    mean_frame_miou = sum(float(r["miou"]) for r in rows) / len(rows)
    picked_frame_miou = sum(float(r["miou"]) for r in picked) / len(picked)
    assert picked_frame_miou < mean_frame_miou
    assert summary["picked_miou"] < summary["bag_miou"]
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes][:4] == ["Sky", "Building", "Pole", "Road"]


def test_mine_errors_are_one_line(tmp_path, capsys, camvid_bag):
    assert mine_main([str(camvid_bag), "--count", "2", "--out", str(tmp_path / "x"), "--image-topic", "/nope"]) == 2
    assert "has no topic /nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mine_main([str(tmp_path / "missing"), "--count", "2", "--out", str(tmp_path / "y")])
