"""Training against an unlucky machine and odd data: --resume refuses another network's or
recipe's checkpoint in one line, one run per run folder (a dead run's lock is taken over), stale
temporaries of a killed checkpoint write removed, a full disk named with the last checkpoint
intact, and 16-bit label PNGs that train (or are refused naming the file, with and without
DataLoader workers)."""

import errno
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bevanet_core.cli.train import main as train_main
from bevanet_core.data.datasets import CamVid
from bevanet_core.data.transforms import TrainTransform
from bevanet_core.training import checkpointing
from bevanet_core.training.checkpointing import CheckpointError, load_training_checkpoint
from bevanet_core.training.config import load_config
from bevanet_core.training.engine import train

pytestmark = pytest.mark.usefixtures("one_thread")


REPO = Path(__file__).resolve().parents[1]


def _overrides(data_root: Path, out_dir: Path, iterations: int, **extra) -> list[str]:
    base = [
        f"data.root={data_root}",
        "data.train_list=train.lst",
        "data.val_list=val.lst",
        "data.base_size=64",
        "data.crop_size=[64,48]",
        "data.workers=0",
        "optim.batch_size=2",
        f"optim.iterations={iterations}",
        f"run.out_dir={out_dir}",
        "run.checkpoint_every=1",
        "run.val_every=0",
        "run.val_limit=1",
        "run.threads=1",
        "run.precision=fp32",
    ]
    return base + [f"{k}={v}" for k, v in extra.items()]


def _cfg(data_root: Path, out_dir: Path, iterations: int, **extra):
    return load_config(None, _overrides(data_root, out_dir, iterations, **extra))


def _to_16_bit(root: Path) -> list[Path]:
    """Rewrites every label under `root` as a 16-bit PNG with the same values."""
    labels = sorted((root / "trainannot").glob("*.png"))
    for path in labels:
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert cv2.imwrite(str(path), label.astype(np.uint16))
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    return labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    """A 16-bit-label CamVid pair and a run folder one iteration into a 3-iteration schedule."""
    root = tmp_path_factory.mktemp("reliability")
    data = root / "data"
    line = (shared_data / "camvid" / "train.lst").read_text().splitlines()[0]
    for rel in line.split():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "camvid" / rel, data / rel)
    (data / "train.lst").write_text(f"{line}\n{line}\n")
    (data / "val.lst").write_text(f"{line}\n")
    _to_16_bit(data)
    result = train(_cfg(data, root / "run", 3), stop_after=1)
    assert result["stopped"] and result["iteration"] == 1
    return data, root / "run"


def _copy_run(trained, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    return run


def test_16_bit_labels_train_and_load_as_the_8_bit_ids(trained, shared_data):
    data, run = trained
    assert load_training_checkpoint(run / "last.pt")["iteration"] == 1
    line = (data / "train.lst").read_text().split()
    original = cv2.imread(str(shared_data / "camvid" / line[1]), cv2.IMREAD_UNCHANGED)
    dataset = CamVid(data, data / "train.lst")
    image, label = dataset.load(0)
    expected = original.copy()
    expected[expected == 11] = 255  # CamVid's void
    assert label.dtype == np.uint8 and np.array_equal(label, expected)
    # the edge-target step the 16-bit labels crashed in
    _, target, edge = TrainTransform(base_size=64, crop_size=(64, 48))(image, label, np.random.default_rng(0))
    assert target.shape == edge.shape == (48, 64) and float(edge.sum()) > 0


@pytest.mark.parametrize("workers", [0, 1])
def test_16_bit_labels_with_values_past_255_are_refused_naming_the_file(trained, tmp_path, workers, capsys):
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    (label,) = sorted((data / "trainannot").glob("*.png"))
    values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    values[0, 0] = 1000
    assert cv2.imwrite(str(label), values)
    argv = ["--set", *_overrides(data, tmp_path / "run", 2, **{"data.workers": workers})]
    if workers:  # a worker forks: from a fresh interpreter, not the test process (see below)
        done = subprocess.run(
            [str(Path(sys.executable).parent / "bevanet-train"), *argv], capture_output=True, text=True, timeout=300
        )
        code, err = done.returncode, done.stderr.strip()
    else:
        code = train_main(argv)
        err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(label) in err and "1000" in err and "Traceback" not in err, err


WORKER_ERROR = """
import sys
from pathlib import Path

import torch

from bevanet_core.data.datasets import CamVid
from bevanet_core.data.files import DatasetError, dataset_error_message

data = Path(sys.argv[1])
loader = torch.utils.data.DataLoader(CamVid(data, data / "train.lst"), num_workers=1)
try:
    next(iter(loader))
except DatasetError as exc:
    print(str(exc).count("Traceback"), dataset_error_message(exc), sep="\\n")
"""


def test_dataset_error_message_is_one_line_from_a_worker(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    (label,) = sorted((data / "trainannot").glob("*.png"))
    values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    values[5, 7] = 40000
    assert cv2.imwrite(str(label), values)
    # the worker is forked from a fresh interpreter: forking the test process, which has run
    # ONNX Runtime, OpenVINO and many torch models by now, crashed it (SIGSEGV) in full runs
    done = subprocess.run(
        [sys.executable, "-c", WORKER_ERROR, str(data)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    tracebacks, shown = done.stdout.strip().split("\n")
    assert int(tracebacks) >= 1  # what the loader re-raises ...
    assert shown.endswith(str(label))  # ... and the one line shown


@pytest.mark.parametrize(
    "change, named",
    [
        ({"model.variant": "pidnet_s"}, "bevanet_s with 11 classes but the recipe asks for a pidnet_s with 11"),
        ({"optim.lr": 0.5}, "optim.lr=0.0038 there vs 0.5 asked"),
    ],
)
def test_resume_refuses_another_network_or_recipe_in_one_line(trained, tmp_path, capsys, change, named):
    data, _ = trained
    run = _copy_run(trained, tmp_path)
    before = (run / "last.pt").read_bytes()
    code = train_main(["--resume", "--set", *_overrides(data, run, 3, **change)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and len(err) < 400, err
    assert named in err and str(run / "last.pt") in err
    assert (run / "last.pt").read_bytes() == before


def test_a_live_run_holds_its_folder_and_a_dead_runs_lock_is_taken_over(trained, tmp_path):
    data, _ = trained
    run = _copy_run(trained, tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "run.lock").write_text(f"{live.pid}\n")
        with pytest.raises(CheckpointError, match=f"in use by the run of pid {live.pid}"):
            train(_cfg(data, run, 3), resume="auto")
        assert load_training_checkpoint(run / "last.pt")["iteration"] == 1
    finally:
        live.kill()
        live.wait()
    # the holder died (killed): its lock no longer keeps the folder; a stale temporary of a
    # checkpoint write cut short is removed as the new run takes the folder
    stale = run / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 4096)
    result = train(_cfg(data, run, 3), resume="auto", stop_after=1)
    assert result["iteration"] == 2
    assert not stale.exists() and not (run / "run.lock").exists()
    assert not list(run.glob(".*.tmp"))


def test_full_disk_during_a_checkpoint_names_the_file_and_keeps_the_last_one(trained, tmp_path, monkeypatch, capsys):
    data, _ = trained
    run = _copy_run(trained, tmp_path)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"\0" * 1024)  # part of the file got out before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointing.torch, "save", full_disk)
    code = train_main(["--resume", "--set", *_overrides(data, run, 3)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert f"cannot write checkpoint {run / 'last.pt'}: no space left on the device" in err
    assert "previous checkpoint there is intact" in err
    monkeypatch.setattr(checkpointing.torch, "save", real_save)
    assert load_training_checkpoint(run / "last.pt")["iteration"] == 1
    assert not list(run.glob(".*.tmp")) and not (run / "run.lock").exists()
