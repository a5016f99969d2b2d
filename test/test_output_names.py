"""Outputs never collide and never fail silently: bevanet-predict and bevanet-eval
--save-predictions name their outputs after as much of the input path as keeps them apart (or
refuse before working), every image write is checked, and a failed write is an error naming the
file, with the report of what was done so far still written and a failing exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from bevanet_core.cli import evaluate, predict
from bevanet_core.paths import OutputNameError, OutputWriteError, unique_output_names, write_image

pytestmark = pytest.mark.usefixtures("one_thread")


def test_names_keep_enough_of_the_path_to_be_unique():
    assert unique_output_names([Path("a/x.png"), Path("a/y.png")]) == ["x", "y"]
    assert unique_output_names([Path("d/frame.png"), Path("d/frame.jpg"), Path("d/other.png")]) == [
        "frame_png",
        "frame_jpg",
        "other",
    ]
    assert unique_output_names([Path("r/seq1/0001.png"), Path("r/seq2/0001.png"), Path("r/seq2/0002.png")]) == [
        "seq1_0001",
        "seq2_0001",
        "0002",
    ]
    assert unique_output_names([Path("a/run/b/0001.png"), Path("a/walk/b/0001.png")]) == ["run_b_0001", "walk_b_0001"]
    assert unique_output_names([Path("s/0001.png"), Path("s/0001.png")]) == ["0001", "0001"]  # one file, listed twice


@pytest.mark.parametrize(
    "paths",
    [
        ["d/Frame.png", "d/frame.png"],  # one name on a case-insensitive file system
        ["d/frame.png", "d/frame.jpg", "d/frame_png.png"],  # the longer name meets another file's
    ],
)
def test_names_no_path_can_separate_are_refused_naming_two_inputs(paths):
    with pytest.raises(OutputNameError, match="the outputs of d/"):
        unique_output_names([Path(p) for p in paths])


def test_write_image_names_the_file_it_could_not_write(tmp_path):
    write_image(tmp_path / "ok.png", np.zeros((4, 4), np.uint8))
    assert cv2.imread(str(tmp_path / "ok.png")) is not None
    with pytest.raises(OutputWriteError, match=f"cannot write {tmp_path / 'missing' / 'x.png'}"):
        write_image(tmp_path / "missing" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(OutputWriteError, match="x.nosuchformat"):
        write_image(tmp_path / "x.nosuchformat", np.zeros((4, 4), np.uint8))


def _frames(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        assert cv2.imwrite(str(folder / name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return folder


def test_predict_keeps_frame_png_and_frame_jpg_apart(tmp_path, capsys):
    src = _frames(tmp_path / "in", ["frame.png", "frame.jpg"])
    assert predict.main([str(src), "--out", str(tmp_path / "out"), "--input-size", "64x48"]) == 0
    for sub in ("masks", "color", "overlay"):
        assert sorted(p.name for p in (tmp_path / "out" / sub).iterdir()) == ["frame_jpg.png", "frame_png.png"]
    assert "segmented 2 frame(s)" in capsys.readouterr().out


def test_predict_refuses_before_working_when_names_cannot_be_kept_apart(tmp_path, capsys):
    src = _frames(tmp_path / "in", ["frame.png", "frame.jpg", "frame_png.png"])
    assert predict.main([str(src), "--out", str(tmp_path / "out"), "--input-size", "64x48"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "would both be named 'frame_png'" in err
    assert not (tmp_path / "out").exists()


def _failing_writes(monkeypatch, failing: str):
    real = cv2.imwrite

    def imwrite(path, image, *args):
        return False if Path(path).name == failing else real(path, image, *args)

    monkeypatch.setattr(cv2, "imwrite", imwrite)


def test_predict_failed_write_is_named_reported_and_fails(tmp_path, monkeypatch, capsys):
    src = _frames(tmp_path / "in", ["a.png", "b.png", "c.png"])
    _failing_writes(monkeypatch, "b.png")
    assert predict.main([str(src), "--out", str(tmp_path / "out"), "--input-size", "64x48"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {tmp_path / 'out' / 'masks' / 'b.png'}" in err[0]
    assert "segmented 1 frame(s) (0 unreadable skipped) before the failed write" in captured.out
    assert [p.name for p in (tmp_path / "out" / "masks").iterdir()] == ["a.png"]


def _two_sequences(tmp_path: Path, shared_data: Path) -> Path:
    """seq1/0001.png and seq2/0001.png: two CamVid frames with the same file name."""
    root = tmp_path / "data"
    lines = (shared_data / "camvid" / "val.lst").read_text().splitlines()[:2]
    entries = []
    for seq, line in zip(("seq1", "seq2"), lines, strict=True):
        image, label = line.split()
        for rel, sub in ((image, seq), (label, f"{seq}annot")):
            dst = root / sub / "0001.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            frame = cv2.imread(str(shared_data / "camvid" / rel), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(dst), cv2.resize(frame, (120, 90), interpolation=cv2.INTER_NEAREST))
        entries.append(f"{seq}/0001.png {seq}annot/0001.png")
    (root / "pairs.lst").write_text("\n".join(entries) + "\n")
    return root


def _eval_args(root: Path, tmp_path: Path) -> list[str]:
    return [
        "--dataset",
        "camvid",
        "--root",
        str(root),
        "--list",
        "pairs.lst",
        "--input-size",
        "120x96",
        "--save-predictions",
        str(tmp_path / "pred"),
        "--json",
        str(tmp_path / "report.json"),
    ]


def test_eval_keeps_seq1_and_seq2_predictions_apart(tmp_path, shared_data):
    root = _two_sequences(tmp_path, shared_data)
    assert evaluate.main(_eval_args(root, tmp_path)) == 0
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["seq1_0001.png", "seq2_0001.png"]
    assert json.loads((tmp_path / "report.json").read_text())["images"] == 2


def test_eval_failed_write_is_named_and_the_report_of_the_frames_before_is_written(
    tmp_path, shared_data, monkeypatch, capsys
):
    root = _two_sequences(tmp_path, shared_data)
    _failing_writes(monkeypatch, "seq2_0001.png")
    assert evaluate.main(_eval_args(root, tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {tmp_path / 'pred' / 'seq2_0001.png'}" in err[0]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["images"] == 2 and str(tmp_path / "pred" / "seq2_0001.png") in report["write_error"]
    shutil.rmtree(tmp_path / "pred")


def test_predict_output_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    src = _frames(tmp_path / "in", ["a.png"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "masks").write_text("a file where the masks folder belongs")
    assert predict.main([str(src), "--out", str(tmp_path / "out"), "--input-size", "64x48"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot create {tmp_path / 'out' / 'masks'}" in err[0]
