"""Self-training: bevanet-pseudo-label's output, and a recipe's data.extra_train reading it."""

import json

import cv2
import numpy as np
import pytest

from bevanet_core.cli import pseudo_label as cli
from bevanet_core.runtime import Segmenter
from bevanet_core.training.config import load_config
from bevanet_core.training.engine import build_datasets

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def labelled(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pseudo")
    video = shared_data / "driving_video" / "solidWhiteRight.mp4"
    argv = [str(video), str(shared_data / "kitti_gray_seq"), "--out", str(out), "--every", "100"]
    # the pipeline the test compares with: torch fp32 (the tool's default would pick the fastest)
    assert cli.main([*argv, "--threshold", "0.8", "--threads", "1", "--backend", "torch"]) == 0
    return out


def test_the_teachers_sure_pixels_are_kept_and_the_rest_ignored(labelled, shared_data):
    lines = (labelled / "list.lst").read_text().split("\n")[:-1]
    # every 100th frame: 3 of the video's 221, 1 of KITTI's 51, names that keep their source apart
    assert [line.split()[0] for line in lines] == [
        "images/solidWhiteRight_000000.png",
        "images/solidWhiteRight_000100.png",
        "images/solidWhiteRight_000200.png",
        "images/kitti_gray_seq_000000.png",
    ]
    segmenter = Segmenter(backend="torch", num_threads=1)
    image_rel, label_rel = lines[3].split()
    frame = cv2.cvtColor(cv2.imread(str(labelled / image_rel)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(
        frame, cv2.cvtColor(cv2.imread(str(shared_data / "kitti_gray_seq" / "000000.png")), cv2.COLOR_BGR2RGB)
    )
    label = cv2.imread(str(labelled / label_rel), cv2.IMREAD_UNCHANGED)
    res = segmenter.segment(frame, "rgb8", confidence=True)
    sure = res.confidence >= round(0.8 * 255)
    assert np.array_equal(label[sure], res.mask[sure]) and (label[~sure] == 255).all()
    assert 0 < sure.mean() < 1
    summary = json.loads((labelled / "pseudo_labels.json").read_text())
    assert summary["frames"] == 4 and summary["threshold"] == 0.8 and 0 < summary["kept_share"] < 1
    assert summary["teacher"]["variant"] == "bevanet_s"


def test_a_recipe_trains_on_pseudo_labelled_frames_beside_camvid(labelled):
    cfg = load_config(None, [f"data.extra_train=[{labelled}]", "data.train_split=heldout-train"])
    train, _ = build_datasets(cfg)
    assert len(train) == 367 + 4
    x, y, edge = train[(len(train) - 1, 0)]  # the KITTI frame, through the training transform
    assert x.shape == (3, 360, 480) and y.shape == (360, 480)
    assert set(np.unique(y.numpy())) <= set(range(11)) | {255}


def test_unreadable_or_missing_input_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "broken.png").write_bytes(b"not a png")
    assert cli.main([str(tmp_path / "frames"), "--out", str(tmp_path / "out"), "--threads", "1"]) == 2
    assert "no readable frames" in capsys.readouterr().err
