"""Hostile input through the offline tools, each case the way a user or a faulty recorder meets
it: a one-line error (exit 2) or a counted, named drop; never a traceback, an allocation bomb
or a destroyed input. The seeded fuzz and the broken-bag corpus are in test_hostile_fuzz.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from bevanet_core.bags import evaluate, messages
from bevanet_core.bags.reader import BagReader, mcap_crc_fault
from bevanet_core.bags.writer import (
    OWNER_FILE,
    BagWriteError,
    BagWriter,
    CameraBagOptions,
    Frame,
    write_camera_bag,
)
from bevanet_core.checkpoint import (
    METADATA_KEY,
    CheckpointError,
    ModelInfo,
    load_model,
    save_weights,
)
from bevanet_core.cli import bag_eval, make_bag, predict
from bevanet_core.imaging import policy
from bevanet_core.models import build_model
from bevanet_core.runtime import Segmenter
from bevanet_core.serving.decode import ImageDecodeError, message_to_rgb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from fuzz_hostile import jpeg_header_only, png_header_only  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    info = ModelInfo.default("bevanet_s", 11)
    info.input_size = (64, 64)
    path = tmp_path_factory.mktemp("w") / "seeded.safetensors"
    save_weights(build_model("bevanet_s", num_classes=11).eval(), path, info)
    return path


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def one_line_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if "error" in line.lower()]
    assert "Traceback" not in text, text
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------------- input policy
def test_header_sizes_are_read_without_decoding():
    assert policy.header_size(png_header_only(20000, 15000)) == (20000, 15000)
    assert policy.header_size(jpeg_header_only(8000, 6000)) == (8000, 6000)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8))
    assert policy.header_size(jpeg.tobytes()) == (53, 37)  # a real JPEG, APP0 first
    assert policy.header_size(b"GIF89a") is None and policy.header_size(b"\xff\xd8") is None


def test_png_bomb_file_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    t0 = time.perf_counter()
    with pytest.raises(ImageDecodeError) as err:
        policy.read_image_file(bomb)
    assert err.value.kind == "too_large" and "20000x20000" in str(err.value)
    assert time.perf_counter() - t0 < 0.5
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ImageDecodeError) as err:
        policy.read_image_file(tmp_path / "garbage.png")
    assert err.value.kind in ("unknown_format", "corrupt_file")


def test_the_pixel_cap_is_configurable(tmp_path, monkeypatch):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((30, 40, 3), np.uint8))
    monkeypatch.setenv(policy.MAX_PIXELS_ENV, "1000")
    with pytest.raises(ImageDecodeError, match="cap of 1000"):
        policy.read_image_file(img)
    policy.set_max_pixels(2000)
    try:
        assert policy.read_image_file(img).shape == (30, 40, 3)
        raw = SimpleNamespace(encoding="rgb8", height=50, width=50, step=150, data=bytes(7500))
        with pytest.raises(ImageDecodeError, match="too_large|exceeds"):
            message_to_rgb(raw)
    finally:
        policy.set_max_pixels(None)
    with pytest.raises(ValueError):
        policy.parse_max_pixels("-5")


def test_compressed_bombs_are_refused_by_header():
    for data in (png_header_only(20000, 20000), jpeg_header_only(65535, 65535)):
        with pytest.raises(ImageDecodeError) as err:
            message_to_rgb(SimpleNamespace(format="png", data=data))
        assert err.value.kind == "too_large"


def test_huge_step_is_refused_not_allocated():
    msg = SimpleNamespace(encoding="rgb8", height=1, width=4, step=2**62, data=bytes(12))
    with pytest.raises(ImageDecodeError) as err:
        message_to_rgb(msg)
    assert err.value.kind == "too_large"


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) not installed")
def test_predict_refuses_a_bomb_under_4g_in_under_5s(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            "prlimit",
            f"--as={4 * 2**30}",
            sys.executable,
            "-m",
            "bevanet_core.cli.predict",
            str(bomb),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    assert "exceeds the cap" in one_line_error(proc.stderr)
    assert wall < 5.0, f"refusal took {wall:.1f} s"


def test_predict_folder_counts_unreadable_images(tmp_path, weights, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "good.png"), np.full((48, 64, 3), 90, np.uint8))
    (src / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (src / "junk.jpg").write_bytes(b"\xff\xd8not a jpeg")
    code = predict.main([str(src), "--out", str(tmp_path / "out"), "--weights", str(weights)])
    err = capsys.readouterr()
    assert code == 0 and "segmented 1 frame(s) (2 unreadable skipped)" in err.out
    assert "skipped (too_large)" in err.err and (tmp_path / "out/masks/good.png").is_file()


def test_predict_garbage_video_and_bad_outputs(tmp_path, weights, capsys):
    video = tmp_path / "v.mp4"
    video.write_bytes(os.urandom(4096))
    assert predict.main([str(video), "--out", str(tmp_path / "o"), "--weights", str(weights)]) == 2
    assert "cannot open video" in one_line_error(capsys.readouterr().err)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as e:
        predict.main([str(video), "--out", str(tmp_path / "file")])
    assert e.value.code == 2 and "not a folder" in capsys.readouterr().err
    folder = tmp_path / "imgs"
    folder.mkdir()
    with pytest.raises(SystemExit):
        predict.main([str(folder), "--out", str(folder / "out")])
    assert "inside the input" in capsys.readouterr().err


# ------------------------------------------------------------------------- bag evaluation
def hostile_bag(path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    store = messages.typestore()
    with BagWriter(path) as w:
        w.add_topic("/cam", messages.IMAGE)
        w.write("/cam", 1, messages.image_msg(rgb, "rgb8", 1, "c"))
        w.write("/cam", 2, messages.image_msg(np.zeros((0, 0, 3), np.uint8), "rgb8", 2, "c"))
        w.write("/cam", 3, messages.image_msg(np.zeros((16, 15, 2), np.uint8), "yuv422", 3, "c"))
        big = messages.image_msg(rgb, "rgb8", 4, "c")
        big.height, big.width, big.step = 10000, 10000, 30000
        w.write("/cam", 4, big)
        w.write("/cam", 5, messages.image_msg(rgb, "rgb8", 5, "c"))
    del store


def test_bag_eval_counts_hostile_frames_by_reason_and_finishes(tmp_path, weights):
    bag = tmp_path / "hostile"
    hostile_bag(bag)
    js = tmp_path / "r.json"
    t0 = time.perf_counter()
    code = bag_eval.main(
        [
            str(bag),
            "--weights",
            str(weights),
            "--label-topic",
            "none",
            "--json",
            str(js),
            "--threads",
            "1",
        ]
    )
    assert code == 1 and time.perf_counter() - t0 < 30
    report = json.loads(js.read_text())
    assert report["frames"] == 2 and report["undecodable"] == 3
    assert report["undecodable_reasons"] == {"odd_width": 1, "too_large": 1, "zero_size": 1}
    assert report["bags"][0]["undecodable_reasons"] == report["undecodable_reasons"]


def test_out_bag_onto_its_own_input_is_refused_and_the_input_is_untouched(tmp_path, weights, capsys):
    bag = tmp_path / "B"
    write_camera_bag([Frame(np.zeros((16, 16, 3), np.uint8))] * 3, bag, CameraBagOptions())
    before = tree_digest(bag)
    for out in (bag, bag / "inside", tmp_path):
        with pytest.raises(SystemExit) as e:
            bag_eval.main(
                [
                    str(bag),
                    "--out-bag",
                    str(out),
                    "--overwrite",
                    "--no-copy-inputs",
                    "--weights",
                    str(weights),
                ]
            )
        assert e.value.code == 2
        assert "would destroy an input bag" in capsys.readouterr().err
    assert tree_digest(bag) == before
    # the library refuses it too, whoever calls it
    with pytest.raises(BagWriteError, match="made from"):
        BagWriter(bag, overwrite=True, inputs=[bag]).open()
    seg = Segmenter(weights=str(weights), backend="torch")
    with pytest.raises(BagWriteError):
        evaluate.evaluate_bag(
            bag,
            evaluate.RuntimeProcessor(seg),
            evaluate.EvalOptions(out_bag=bag, overwrite=True, copy_inputs=False),
        )
    assert tree_digest(bag) == before


def test_stale_partials_of_killed_writers_are_removed_or_named(tmp_path, caplog):
    dest = tmp_path / "out_bag"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / ".out_bag.partial-dead"
    stale.mkdir()
    (stale / OWNER_FILE).write_text(f"{dead.pid} {os.uname().nodename}\n")
    (stale / "junk").write_bytes(bytes(1000))
    foreign = tmp_path / ".out_bag.partial-foreign"
    foreign.mkdir()
    with caplog.at_level("WARNING"):
        write_camera_bag([Frame(np.zeros((8, 8, 3), np.uint8))], dest, CameraBagOptions())
    assert not stale.exists() and foreign.exists() and (dest / "metadata.yaml").is_file()
    text = caplog.text
    assert "removed" in text and str(stale) in text and str(foreign) in text
    # the new bag's own partial folder is gone once it closed; the foreign one is kept
    assert list(tmp_path.glob(".out_bag.partial-*")) == [foreign]


def _stamp_crcs(mcap: Path) -> list[int]:
    """Writes each chunk's CRC (of its uncompressed records) into its header, as rosbag2's
    recorder does; returns the byte offsets of the chunks."""
    from bevanet_core.bags.storage import _decompress_mcap

    data = bytearray(mcap.read_bytes())
    pos, chunks = 8, []
    while pos < len(data):
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if op == 0x06:
            body = pos + 9
            size, (n,) = (
                struct.unpack_from("<Q", data, body + 16)[0],
                struct.unpack_from("<I", data, body + 28),
            )
            compression = bytes(data[body + 32 : body + 32 + n]).decode()
            (clen,) = struct.unpack_from("<Q", data, body + 32 + n)
            records = bytes(data[body + 40 + n : body + 40 + n + clen])
            raw = _decompress_mcap(records, compression, size)
            struct.pack_into("<I", data, body + 24, zlib.crc32(raw))
            chunks.append(pos)
        if op == 0x02:
            break
        pos += 9 + length
    mcap.write_bytes(bytes(data))
    return chunks


def test_a_chunk_failing_its_crc_is_read_like_a_truncation(tmp_path, weights):
    bag = tmp_path / "crc"
    rng = np.random.default_rng(3)
    frames = [Frame(rng.integers(0, 256, (128, 128, 3), np.uint8)) for _ in range(24)]
    write_camera_bag(frames, bag, CameraBagOptions(rate=10.0))
    mcap = next(bag.glob("*.mcap"))
    chunks = _stamp_crcs(mcap)
    assert len(chunks) >= 2 and mcap_crc_fault(mcap) is None
    with BagReader(bag) as r:
        assert r.recovered is None and sum(1 for _ in r.messages()) == 48
    data = bytearray(mcap.read_bytes())
    data[chunks[-1] + 300] ^= 0x40  # a flip inside the records of the last chunk
    mcap.write_bytes(bytes(data))
    assert "fails its CRC" in mcap_crc_fault(mcap)
    seg = Segmenter(weights=str(weights), backend="torch")
    res = evaluate.evaluate_bag(bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions(label_topic=None))
    assert 0 < res.frames < 24 and len(res.errors) == 1
    assert "CRC" in res.errors[0]["error"] and res.errors[0]["frames_before"] == res.frames


# ------------------------------------------------------------------------- weights
def _save(path: Path, model, info_json: str | None = None, info: ModelInfo | None = None):
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {METADATA_KEY: info_json if info_json is not None else info.to_json()}
    save_file(tensors, str(path), metadata=meta)
    return path


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, capsys):
    model = build_model("bevanet_s", num_classes=11).eval()
    with torch.no_grad():
        model.head.conv2.weight[0, 0, 0, 0] = float("nan")
        model.conv1[0].weight[0, 0, 0, 0] = float("inf")
    path = _save(tmp_path / "nan.safetensors", model, info=ModelInfo.default("bevanet_s", 11))
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_model(path)
    load_model(path, allow_nonfinite=True)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    assert predict.main([str(img), "--weights", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "NaN or inf" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d.update(class_names=d["class_names"][:5]), "class_names has 5"),
        (
            lambda d: d.update(num_classes=7, class_names=d["class_names"][:7], palette=d["palette"][:7]),
            "head has 11 output channels",
        ),
        (lambda d: d.update(mean=["a", 0, 0]), "mean must be three finite numbers"),
        (lambda d: d.update(input_size=[100000, 100000]), "input_size must be"),
        (lambda d: d.update(palette=[[999, 0, 0]] * 11), "palette"),
        (lambda d: d.update(num_classes=True), "num_classes"),
    ],
)
def test_inconsistent_or_corrupt_metadata_is_one_clear_error(tmp_path, change, expected):
    model = build_model("bevanet_s", num_classes=11).eval()
    data = json.loads(ModelInfo.default("bevanet_s", 11).to_json())
    change(data)
    path = _save(tmp_path / "m.safetensors", model, info_json=json.dumps(data))
    with pytest.raises(CheckpointError, match=expected) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["[1, 2, 3]", '"a string"', "{", "x" * (2 << 20)])
def test_metadata_that_is_not_an_object_is_refused(tmp_path, text):
    model = build_model("bevanet_s", num_classes=11).eval()
    path = _save(tmp_path / "m.safetensors", model, info_json=text)
    with pytest.raises(CheckpointError, match="metadata"):
        load_model(path)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from bevanet_core.export.onnx import export_onnx

    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=11).eval()
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_onnx(model, ModelInfo.default("bevanet_s", 11), path, input_size=(128, 128))
    return path


def _rewrite_metadata(src: Path, dst: Path, edit) -> Path:
    import onnx

    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            data = json.loads(prop.value)
            edit(data)
            prop.value = json.dumps(data)
    onnx.save(proto, str(dst))
    return dst


def test_onnx_graph_disagreeing_with_its_metadata_is_refused_at_load(onnx_model, tmp_path):
    from bevanet_core.export.metadata import ArtifactError, read_onnx_metadata

    assert read_onnx_metadata(onnx_model).input_size == (128, 128)
    size = _rewrite_metadata(onnx_model, tmp_path / "size.onnx", lambda d: d.update(input_size=[256, 192]))
    with pytest.raises(ArtifactError, match="input .* is .*128x128 but its metadata says"):
        read_onnx_metadata(size)

    def classes(d):
        info = d["model_info"]
        info.update(num_classes=7, class_names=info["class_names"][:7], palette=info["palette"][:7])

    other = _rewrite_metadata(onnx_model, tmp_path / "classes.onnx", classes)
    with pytest.raises(ArtifactError, match="names 7 classes"):
        read_onnx_metadata(other)
    with pytest.raises(ValueError, match="metadata"):
        Segmenter(weights=str(size), backend="onnxruntime")


def test_node_model_load_failure_is_a_start_error(onnx_model, tmp_path):
    pytest.importorskip("rclpy")
    from bevanet_core.serving.model_loading import ModelLoadError, build_segmenter
    from bevanet_core.serving.params import NodeSettings

    bad = _rewrite_metadata(onnx_model, tmp_path / "size.onnx", lambda d: d.update(input_size=[256, 192]))
    settings = NodeSettings.from_values({"weights": str(bad), "backend": "onnxruntime"})
    with pytest.raises(ModelLoadError, match="metadata says"):
        build_segmenter(settings)


# ------------------------------------------------------------------------- export sizes
def test_export_sizes_follow_the_pooling_chain():
    from bevanet_core.export.onnx import inference_model
    from bevanet_core.export.sizes import (
        EXPORT_SIZE_MULTIPLES,
        ExportSizeError,
        check_exportable,
        size_multiple,
    )

    net = inference_model(build_model("bevanet_s", num_classes=11))
    for name, step in EXPORT_SIZE_MULTIPLES.items():  # the figures --help states
        assert size_multiple(inference_model(build_model(name, num_classes=11))) == step
    assert size_multiple(inference_model(build_model("pidnet_s", num_classes=11))) == 8
    check_exportable(net, 480, 360)
    check_exportable(net, 512, 384)
    with pytest.raises(ExportSizeError, match="5x4 feature map.*nearest that works is 328x240"):
        check_exportable(net, 320, 240)
    with pytest.raises(ExportSizeError, match="15x12"):
        check_exportable(net, 960, 720)


def test_export_cli_refuses_an_unexportable_size_in_one_line(tmp_path, weights, capsys):
    from bevanet_core.cli import export

    code = export.main(["--weights", str(weights), "--input-size", "320x240", "--onnx", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be exported at 320x240" in one_line_error(err)
    assert "SymbolicValueError" not in err and not (tmp_path / "m.onnx").exists()
    assert "multiple of 128" in export.build_parser().format_help().replace("\n", " ")


# ------------------------------------------------------------------------- make-bag values
def test_make_bag_rate_zero_is_refused_not_replaced(tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.zeros((8, 8, 3), np.uint8))
    for bad in (
        ["--rate", "0"],
        ["--start-time", "-1"],
        ["--start-time", "1e30"],
        ["--image-topic", "/camera//image"],
        ["--image-topic", "1cam"],
        ["--label-topic", "a b"],
    ):
        with pytest.raises(SystemExit) as e:
            make_bag.main(["--images", str(src), "--out", str(tmp_path / "b"), *bad])
        assert e.value.code == 2, bad
        assert "error: argument" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    assert make_bag.main(["--images", str(src), "--out", str(tmp_path / "b"), "--rate", "5"]) == 0
    with BagReader(tmp_path / "b") as r:
        assert "/camera/image_raw" in r.topics


def test_decoder_error_kinds_cover_file_problems(tmp_path):
    with pytest.raises(ImageDecodeError) as err:
        policy.read_image_file(tmp_path / "missing.png")
    assert err.value.kind == "unreadable_file"
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError) as err:
        policy.read_image_file(tmp_path / "empty.png")
    assert err.value.kind == "zero_size"


# ------------------------------------------------------------------------- frames lost in DDS
def test_frames_lost_in_transport_are_counted_and_reported():
    """A frame DDS loses (one missing UDP fragment of a large best-effort sample) never reaches
    a callback; the subscription's 'message lost' event is the only trace, and it is counted
    and logged like a bad frame."""
    from bevanet_core.serving.stream import StreamSegmenter

    reports = []
    stream = StreamSegmenter(None, ["front"], report=lambda kind, text: reports.append(text))
    stream.on_lost(0, 2)
    stream.on_lost(0, 0)
    snap = stream.stats.snapshot()
    assert snap["frames_lost_in_transport"] == 2 and snap["frames_lost_in_transport[front]"] == 2
    assert len(reports) == 1 and "2 frame(s) lost in transport" in reports[0]
    pytest.importorskip("rclpy")
    from bevanet_ros.pipeline import SegmentationPipeline

    pipeline = SegmentationPipeline(node=None)
    pipeline.stream = stream
    callbacks = pipeline._lost_callbacks(0)
    callbacks.message_lost(SimpleNamespace(total_count=5, total_count_change=3))
    assert stream.stats.snapshot()["frames_lost_in_transport"] == 5


def test_huge_frames_are_upsampled_band_by_band(monkeypatch):
    """The banded path (taken above BAND_BYTES of logits, e.g. an 8000x6000 frame) gives the
    one-shot path's mask up to float rounding, with the memory of one band."""
    from bevanet_core.imaging import processing

    torch.manual_seed(1)
    info = ModelInfo.default("bevanet_s", 11)
    seg = Segmenter.from_model(
        build_model("bevanet_s", num_classes=11).eval(), info, backend="torch", input_size=(64, 64)
    )
    frame = np.random.default_rng(2).integers(0, 256, (301, 457, 3), np.uint8)
    full = seg.segment(frame, confidence=True)
    monkeypatch.setattr(processing, "BAND_BYTES", 11 * 457 * 4 * 7)  # bands of 7 rows
    banded = seg.segment(frame, confidence=True)
    assert banded.mask.shape == full.mask.shape == (301, 457)
    assert (banded.mask == full.mask).mean() > 0.999
    assert np.abs(banded.confidence.astype(int) - full.confidence.astype(int)).max() <= 1


def test_a_writer_killed_with_sigkill_leaves_nothing_the_next_run_keeps(tmp_path):
    import signal

    dest = tmp_path / "killed_bag"
    code = (
        "import sys, time, numpy as np\n"
        "from bevanet_core.bags import messages\n"
        "from bevanet_core.bags.writer import BagWriter\n"
        f"w = BagWriter({str(dest)!r}); w.open(); w.add_topic('/cam', messages.IMAGE)\n"
        "w.write('/cam', 1, messages.image_msg(np.zeros((64, 64, 3), np.uint8), 'rgb8', 1, 'c'))\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert len(list(tmp_path.glob(".killed_bag.partial-*"))) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(tmp_path.glob(".killed_bag.partial-*"))) == 1  # nothing could clean up
    write_camera_bag([Frame(np.zeros((8, 8, 3), np.uint8))], dest, CameraBagOptions())
    assert not list(tmp_path.glob(".killed_bag.partial-*")) and (dest / "metadata.yaml").is_file()
