"""Test-time augmentation (bevanet-eval --tta, bevanet-predict --tta) and bevanet-eval's splits by drive."""

import json

import cv2
import numpy as np
import pytest

from bevanet_core.cli import evaluate as eval_cli
from bevanet_core.cli import predict as predict_cli
from bevanet_core.runtime import Segmenter
from bevanet_core.runtime.tta import TestTimeAugmentation, parse_scales

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(backend="torch", num_threads=1)


@pytest.fixture(scope="module")
def frame(shared_data):
    line = (shared_data / "camvid" / "val.lst").read_text().split()[0]
    return cv2.cvtColor(cv2.imread(str(shared_data / "camvid" / line)), cv2.COLOR_BGR2RGB)


def test_one_plain_pass_is_the_segmenters_own_mask(segmenter, frame):
    single = TestTimeAugmentation(segmenter, scales=(1.0,), flip=False)
    assert single.passes == 1
    ours = single.segment(frame, "rgb8", confidence=True)
    theirs = segmenter.segment(frame, "rgb8", confidence=True)
    assert np.array_equal(ours.mask, theirs.mask)
    assert np.abs(ours.confidence.astype(int) - theirs.confidence.astype(int)).max() <= 1


def test_mirrored_frame_gives_the_mirrored_mask(segmenter, frame):
    # plain and mirrored passes are averaged, so the augmented model is mirror-symmetric
    tta = TestTimeAugmentation(segmenter, scales=(0.75, 1.0), flip=True)
    assert tta.passes == 4 and tta.sizes == [(360, 272), (480, 360)]
    a = tta.segment(frame, "rgb8").mask
    b = tta.segment(np.ascontiguousarray(frame[:, ::-1]), "rgb8").mask
    assert (a == b[:, ::-1]).mean() > 0.999
    # and the augmentation changes something: it is not the single pass
    assert (a != segmenter.segment(frame, "rgb8").mask).any()


def test_other_encodings_are_read_like_the_segmenter_reads_them(segmenter, frame):
    tta = TestTimeAugmentation(segmenter, scales=(1.0,), flip=True)
    rgb = tta.segment(frame, "rgb8").mask
    bgr = tta.segment(np.ascontiguousarray(frame[..., ::-1]), "bgr8").mask
    assert np.array_equal(rgb, bgr)


def test_scales_on_a_fixed_size_model_are_refused_when_built(segmenter, monkeypatch):
    monkeypatch.setattr(segmenter.backend, "static_input_size", (480, 360))
    with pytest.raises(ValueError, match="fixed input of 480x360"):
        TestTimeAugmentation(segmenter, scales=(0.75, 1.0))
    assert TestTimeAugmentation(segmenter, scales=(1.0,)).passes == 2  # mirroring alone needs no other size


@pytest.mark.parametrize("text", ["", "0", "1,x", "-1", "5"])
def test_bad_scales_are_named(text):
    with pytest.raises(ValueError, match="TTA scales"):
        parse_scales(text)


def test_eval_reports_the_heldout_drive_beside_val_and_what_the_model_saw(shared_data, tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--dataset", "camvid", "--root", str(shared_data / "camvid"), "--max-frames", "2", "--threads", "1"]
    assert eval_cli.main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["split"] == "heldout" and set(report["splits"]) == {"heldout", "val"}
    assert report["tta"] is None and report["trained_on"] == "trainval"
    # the shipped model trained on train + val: every labelled frame, both splits' own images
    assert report["splits"]["heldout"]["seen_in_training"] == {"images": 2, "same_drive": 2}
    assert report["splits"]["val"]["seen_in_training"] == {"images": 2, "same_drive": 2}
    printed = capsys.readouterr().out
    assert "== heldout" in printed and "== val" in printed
    assert "2 of these 2 images are in the data the model trained on (trainval)" in printed
    # so the figure it does not measure is given beside: the held-out twin's, stored with the model
    from bevanet_core.checkpoint import DEFAULT_WEIGHTS, read_checkpoint

    proxy = read_checkpoint(DEFAULT_WEIGHTS)[1].extra["proxy"]
    assert report["proxy"] == proxy
    assert printed.count("its honest figure is its held-out twin's (the same recipe without drive 0006R0") == 2
    assert f"{proxy['heldout_miou']:.2f} mIoU on that drive" in printed


def test_eval_with_tta_records_the_passes(shared_data, tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--dataset", "camvid", "--root", str(shared_data / "camvid"), "--split", "val", "--max-frames", "1"]
    assert eval_cli.main([*argv, "--threads", "1", "--tta", "--tta-scales", "1,1.25", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tta"] == {"scales": [1.0, 1.25], "flip": True, "passes": 4, "input_sizes": [[480, 360], [600, 448]]}
    assert "splits" not in report and report["images"] == 1
    assert "test-time augmentation: 4 passes" in capsys.readouterr().out


def test_tta_options_without_tta_are_refused(shared_data, capsys):
    argv = ["--dataset", "camvid", "--root", str(shared_data / "camvid"), "--max-frames", "1", "--tta-no-flip"]
    assert eval_cli.main(argv) == 2
    assert "only apply with --tta" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        eval_cli.main([*argv[:-1], "--tta", "--tta-scales", "0"])
    assert exc.value.code == 2
    assert "TTA scales must be in (0, 4]" in capsys.readouterr().err


def test_predict_with_tta(shared_data, tmp_path):
    line = (shared_data / "camvid" / "val.lst").read_text().split()[0]
    image = shared_data / "camvid" / line
    out = tmp_path / "out"
    assert predict_cli.main([str(image), "--out", str(out), "--threads", "1", "--tta", "--tta-scales", "1"]) == 0
    mask = cv2.imread(str(out / "masks" / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (360, 480) and mask.max() < 11
