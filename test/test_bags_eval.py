"""Bag evaluation: mIoU equal to the offline evaluation, pairing, damage, output bags, sharding."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the rosbags library is not installed")
torch = pytest.importorskip("torch")

from bevanet_core.bags import evaluate, messages, pairing  # noqa: E402
from bevanet_core.bags.distributed import shard, unshard  # noqa: E402
from bevanet_core.bags.reader import BagReader  # noqa: E402
from bevanet_core.bags.writer import CameraBagOptions, Frame, write_camera_bag  # noqa: E402
from bevanet_core.checkpoint import ModelInfo, save_weights  # noqa: E402
from bevanet_core.cli import bag_eval, make_bag  # noqa: E402
from bevanet_core.cli import evaluate as evaluate_cli  # noqa: E402
from bevanet_core.evaluation.metrics import ConfusionMatrix  # noqa: E402
from bevanet_core.models import build_model  # noqa: E402
from bevanet_core.runtime import Segmenter  # noqa: E402
from bevanet_core.serving import decode  # noqa: E402

SIZE = "64x64"  # network input: small keeps every test fast on two CPU cores
N_CAMVID = 10


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core box a second one mostly waits (4x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ColourNet(torch.nn.Module):
    """A stand-in with logits at 1/8: a linear classifier over average colour and position.

    Fitted by least squares on the test frames, its masks hold several classes and reach ~30 %
    mIoU, so that comparing two evaluations compares real numbers (a random BEVANet is ~0 %).
    """

    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AvgPool2d(8)
        self.head = torch.nn.Conv2d(15, 11, 1)

    def features(self, x):
        y = self.pool(x)
        n, _, h, w = y.shape
        yy = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(n, 1, h, w)
        xx = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(n, 1, h, w)
        f = torch.cat([y, yy, xx], 1)
        return torch.cat([f, f * f[:, [0]], f[:, 1:5] * f[:, [3]], f[:, [4]] * f[:, [4]]], 1)

    def forward(self, x):
        return self.head(self.features(x))

    @torch.no_grad()
    def fit(self, images, labels, size=(64, 64)):
        import cv2

        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        xs, ys = [], []
        for image, label in zip(images, labels, strict=True):
            x = torch.from_numpy(cv2.resize(image, size, interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
            f = self.features((x.float() / 255 - mean) / std)[0].reshape(15, -1).T
            lab = torch.from_numpy(
                cv2.resize(label, (size[0] // 8, size[1] // 8), interpolation=cv2.INTER_NEAREST).reshape(-1)
            ).long()
            keep = lab < 11
            xs.append(f[keep])
            ys.append(torch.nn.functional.one_hot(lab[keep], 11).float())
        x1 = torch.cat([torch.cat(xs), torch.ones(sum(len(x) for x in xs), 1)], 1)
        w = torch.linalg.lstsq(x1, torch.cat(ys), driver="gelsd").solution
        self.head.weight.copy_(w[:15].T[:, :, None, None])
        self.head.bias.copy_(w[15])
        return self


@pytest.fixture(scope="module")
def seg(camvid_list):
    from bevanet_core.data.datasets import build_dataset

    data = build_dataset("camvid", *camvid_list)
    pairs = [data.load(i) for i in range(len(data))]
    net = ColourNet().fit([p[0] for p in pairs], [p[1] for p in pairs])
    return Segmenter.from_model(net, ModelInfo.default("bevanet_s", 11), input_size=SIZE)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The shipped CamVid model when this checkout has it (a meaningful mIoU), else a seeded
    BEVANet-S; either way saved with a 64x64 input size, as the CLI tools load it."""
    from bevanet_core.checkpoint import DEFAULT_WEIGHTS, load_model

    if DEFAULT_WEIGHTS.is_file():
        model, info = load_model(DEFAULT_WEIGHTS)
        info.input_size = (64, 64)
    else:
        torch.manual_seed(0)
        model, info = (
            build_model("bevanet_s", num_classes=11).eval(),
            ModelInfo.default("bevanet_s", 11),
        )
        info.input_size = (64, 64)
    path = tmp_path_factory.mktemp("weights") / "bevanet_s_64.safetensors"
    save_weights(model, path, info)
    return path


@pytest.fixture(scope="module")
def camvid_list(shared_data, tmp_path_factory):
    """The first N_CAMVID frames of CamVid val (one sequence, in time order)."""
    root = shared_data / "camvid"
    lines = (root / "val.lst").read_text().splitlines()[:N_CAMVID]
    lst = tmp_path_factory.mktemp("lists") / "val_head.lst"
    lst.write_text("\n".join(lines) + "\n")
    return root, lst


@pytest.fixture(scope="module")
def camvid_bag(camvid_list, tmp_path_factory):
    root, lst = camvid_list
    out = tmp_path_factory.mktemp("bags") / "camvid_val"
    assert (
        make_bag.main(
            [
                "--dataset",
                "camvid",
                "--root",
                str(root),
                "--list",
                str(lst),
                "--out",
                str(out),
                "--rate",
                "15",
            ]
        )
        == 0
    )
    return out


def offline_confusion(seg_, root, lst, decode=None) -> ConfusionMatrix:
    """What the offline evaluation does: dataset loader -> Segmenter -> ConfusionMatrix."""
    from bevanet_core.data.datasets import build_dataset

    data = build_dataset("camvid", root, lst)
    cm = ConfusionMatrix(11, ignore_index=255)
    for i in range(len(data)):
        image, label = data.load(i)
        if decode is not None:
            image = decode(image)
        cm.update(seg_.segment(image, encoding="rgb8").mask, label)
    return cm


# ------------------------------------------------------------------------------- accuracy
def test_camvid_bag_miou_equals_offline_evaluation(seg, camvid_bag, camvid_list):
    res = evaluate.evaluate_bag(camvid_bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions(require_labels=True))
    assert res.errors == [] and (res.frames, res.labelled, res.unpaired_images) == (
        N_CAMVID,
        N_CAMVID,
        0,
    )
    offline = offline_confusion(seg, *camvid_list)
    assert offline.miou() > 15.0  # masks with several classes: the comparison means something
    assert abs(res.confusion.miou() - offline.miou()) < 0.01
    assert np.array_equal(res.confusion.matrix, offline.matrix)  # same pixels, same counts
    # void (11 in the PNGs) is 255 on the label topic, as in the dataset loader
    with BagReader(camvid_bag) as bag:
        raw = next(bag.messages(["/camera/labels"]))
        label = decode.message_to_label(bag.deserialize(raw))
    assert 11 not in np.unique(label) and 255 in np.unique(label)


def test_bag_eval_cli_matches_offline_tool(camvid_bag, camvid_list, weights, tmp_path):
    """bevanet-bag-eval (JSON) against the same weights run over the dataset split."""
    out = tmp_path / "r.json"
    code = bag_eval.main(
        [
            str(camvid_bag),
            "--weights",
            str(weights),
            "--json",
            str(out),
            "--markdown",
            str(tmp_path / "r.md"),
            "--threads",
            "1",
        ]
    )
    report = json.loads(out.read_text())
    assert code == 0 and report["errors"] == []
    assert report["frames"] == N_CAMVID and report["labelled_frames"] == N_CAMVID and report["unpaired"] == 0
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99"} and report["fps"] > 0
    assert list(report["per_class_iou"]) == [
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    ]
    offline = offline_confusion(Segmenter(weights=str(weights)), *camvid_list)
    assert abs(report["miou"] - offline.miou()) < 0.01
    assert "| mIoU |" in (tmp_path / "r.md").read_text()
    # bevanet-eval, the offline tool, on the same list
    tool_json = tmp_path / "eval.json"
    root, lst = camvid_list
    assert (
        evaluate_cli.main(
            [
                "--dataset",
                "camvid",
                "--root",
                str(root),
                "--list",
                str(lst),
                "--input-size",
                "64x64",
                "--weights",
                str(weights),
                "--json",
                str(tool_json),
            ]
        )
        == 0
    )
    assert abs(json.loads(tool_json.read_text())["miou"] - report["miou"]) < 0.01


def test_dataset_folder_labels_match_label_topic(seg, camvid_list, tmp_path):
    """A bag without labels, scored against the dataset list by frame order."""
    root, lst = camvid_list
    bag = tmp_path / "nolabels"
    from bevanet_core.bags.sources import list_frames

    frames = [Frame(f.rgb, None, f.name) for f in list_frames(root, lst, "camvid")]
    write_camera_bag(frames, bag, CameraBagOptions(storage="sqlite3"))
    from bevanet_core.data.datasets import build_dataset

    data = build_dataset("camvid", root, lst)
    res = evaluate.evaluate_bag(
        bag,
        evaluate.RuntimeProcessor(seg),
        evaluate.EvalOptions(),
        label_source=lambda k: data.load(k)[1] if k < len(data) else None,
    )
    assert res.labelled == N_CAMVID
    assert np.array_equal(res.confusion.matrix, offline_confusion(seg, root, lst).matrix)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_compressed_bag_scores_the_jpeg_frames(seg, camvid_list, tmp_path, storage):
    """CompressedImage: the evaluator scores the frames as make-bag's JPEG encoder wrote them
    and Pillow decodes them (the decoder the node uses too)."""
    import io

    import cv2
    from PIL import Image

    root, lst = camvid_list
    bag = tmp_path / "jpeg"
    assert (
        make_bag.main(
            [
                "--dataset",
                "camvid",
                "--root",
                str(root),
                "--list",
                str(lst),
                "--out",
                str(bag),
                "--compressed",
                "--storage",
                storage,
                "--max-frames",
                "4",
            ]
        )
        == 0
    )
    res = evaluate.evaluate_bag(bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions())
    assert res.image_topic == "/camera/image_raw/compressed" and res.labelled == 4

    def jpeg(image):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        return np.asarray(Image.open(io.BytesIO(buf.tobytes())).convert("RGB"))

    four = tmp_path / "four.lst"
    four.write_text("\n".join(lst.read_text().splitlines()[:4]) + "\n")
    assert np.array_equal(res.confusion.matrix, offline_confusion(seg, root, four, decode=jpeg).matrix)


# ------------------------------------------------------------------------------- pairing
def _frames(n, missing=(), h=32, w=48, seed=1):
    rng = np.random.default_rng(seed)
    return [
        Frame(
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            None if i in missing else rng.integers(0, 11, (h, w), dtype=np.uint8),
        )
        for i in range(n)
    ]


def test_missing_label_stamps_are_reported_unpaired(seg, tmp_path):
    bag = tmp_path / "holes"
    write_camera_bag(_frames(6, missing=(1, 4)), bag, CameraBagOptions(rate=10.0, start_time=50.0))
    res = evaluate.evaluate_bag(bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions())
    assert (res.frames, res.labelled, res.unpaired_images, res.unpaired_labels) == (6, 4, 2, 0)
    assert res.unpaired_stamps == [50_100_000_000, 50_400_000_000]
    report = evaluate.build_report([res], seg.class_names)
    assert report["unpaired"] == 2 and report["labelled_frames"] == 4 and report["miou"] is not None


def test_stamper_pairs_out_of_order_and_expires():
    pairs = []
    p = pairing.StampPairer(lambda pr, lab, s: pairs.append(s), tolerance_ns=0, window_ns=1000)
    one = np.zeros((2, 2), np.uint8)
    p.add_label(10, one)  # label before its frame
    p.add_pred(10, one)
    p.add_pred(20, one)  # never labelled
    p.add_label(25, one)  # label of a frame that never came
    p.add_pred(5000, one)  # far later: 20 and 25 expire
    assert pairs == [10] and p.unpaired_preds == [20] and p.unpaired_labels == [25]
    p.finish()
    assert p.unpaired_preds == [20, 5000]
    q = pairing.StampPairer(lambda pr, lab, s: pairs.append(s), tolerance_ns=5)
    q.add_pred(100, one)
    q.add_label(104, one)
    assert pairs[-1] == 104 and not q.preds


# ------------------------------------------------------------------------------- damage
def test_truncated_bag_keeps_frames_before_the_fault(seg, tmp_path, weights):
    bag = tmp_path / "cut"
    frames = _frames(24, h=128, w=128, seed=2)  # several 1 MB MCAP chunks
    # uncompressed chunks, as `ros2 bag record` writes them
    write_camera_bag(frames, bag, CameraBagOptions(rate=10.0, compression="none"))
    f = next(bag.glob("*.mcap"))
    os.truncate(f, int(f.stat().st_size * 0.6))
    out_bag = tmp_path / "cut_out"
    res = evaluate.evaluate_bag(bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions(out_bag=out_bag))
    assert 0 < res.frames < 24 and len(res.errors) == 1
    err = res.errors[0]
    assert "truncated or corrupt" in err["error"] and err["frames_before"] == res.frames
    # every frame before the fault is scored, exactly as offline
    cm = ConfusionMatrix(11)
    for fr in frames[: res.labelled]:
        cm.update(seg.segment(fr.rgb).mask, fr.label)
    assert res.labelled >= res.frames - 1 and np.array_equal(res.confusion.matrix, cm.matrix)
    # the output bag is complete and holds those frames
    with BagReader(out_bag) as ob:
        assert ob.recovered is None and ob.topics["/segmentation/mask"].count == res.frames
    # CLI: report written with the error and the frames, exit status 1
    js = tmp_path / "cut.json"
    assert bag_eval.main([str(bag), "--weights", str(weights), "--json", str(js), "--threads", "1"]) == 1
    report = json.loads(js.read_text())
    assert report["frames"] == res.frames and report["labelled_frames"] == res.labelled
    assert report["errors"][0]["frames_before"] == res.frames and "truncated" in report["errors"][0]["error"]


def test_undecodable_frames_are_counted_not_fatal(seg, tmp_path):
    from bevanet_core.bags.writer import BagWriter

    bag = tmp_path / "odd"
    rgb = np.zeros((16, 16, 3), np.uint8)
    with BagWriter(bag) as w:
        w.add_topic("/cam", messages.IMAGE)
        w.write("/cam", 1, messages.image_msg(rgb, "rgb8", 1, "c"))
        w.write("/cam", 2, messages.image_msg(rgb, "mystery32", 2, "c"))
        w.write("/cam", 3, messages.image_msg(rgb, "rgb8", 3, "c"))
    res = evaluate.evaluate_bag(bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions())
    assert res.frames == 2 and res.skipped == 1 and "mystery32" in res.errors[0]["error"]
    assert res.confusion is None  # no label topic: no accuracy, not an error
    with pytest.raises(evaluate.BagEvalError, match="no topic /nope"):
        evaluate.evaluate_bag(bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions(image_topic="/nope"))
    with pytest.raises(evaluate.BagEvalError, match="no label topic"):
        evaluate.evaluate_bag(bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions(require_labels=True))


# ------------------------------------------------------------------------------- output bag
def test_output_bag_reads_back_with_matching_stamps(seg, tmp_path):
    bag, out = tmp_path / "in", tmp_path / "out"
    frames = _frames(4, seed=3)
    write_camera_bag(frames, bag, CameraBagOptions(rate=5.0, frame_id="front_cam", compressed=True))
    res = evaluate.evaluate_bag(
        bag, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions(out_bag=out, out_storage="sqlite3")
    )
    assert res.out_bag == str(out) and res.frames == 4
    topics = {}
    with BagReader(out) as ob:
        for raw in ob.messages():
            msg = ob.deserialize(raw)
            topics.setdefault(raw.topic, []).append((messages.stamp_ns(msg), raw.log_time, msg))
    assert set(topics) == {
        "/camera/image_raw/compressed",
        "/camera/camera_info",
        "/camera/labels",
        *evaluate.OUTPUT_TOPICS,
    }
    in_stamps = [s for s, _, _ in topics["/camera/image_raw/compressed"]]
    assert len(in_stamps) == 4
    for topic in evaluate.OUTPUT_TOPICS:
        assert [s for s, _, _ in topics[topic]] == in_stamps, topic
        assert [lt for _, lt, _ in topics[topic]] == in_stamps, topic
        assert all(m.header.frame_id == "front_cam" for _, _, m in topics[topic])
    for (_, _, img), (_, _, mask), (_, _, colour), (_, _, over) in zip(
        topics["/camera/image_raw/compressed"],
        topics[evaluate.MASK_TOPIC],
        topics[evaluate.COLOR_TOPIC],
        topics[evaluate.OVERLAY_TOPIC],
        strict=True,
    ):
        rgb = decode.compressed_to_rgb(img)
        expect = seg.segment(rgb).mask
        assert mask.encoding == "mono8" and np.array_equal(decode.image_to_array(mask), expect)
        assert colour.encoding == "rgb8" and np.array_equal(decode.image_to_rgb(colour), seg.colorize(expect))
        # the overlay is a JPEG picture for people: close to the exact blend, not equal
        assert over.format.startswith("rgb8; jpeg")
        blend = seg.overlay(rgb, expect, 0.5).astype(np.int16)
        got = decode.compressed_to_rgb(over).astype(np.int16)
        assert np.abs(got - blend).mean() < 15.0  # noise frames: the hardest case for JPEG
        assert np.abs(got - blend).mean() < np.abs(got - rgb.astype(np.int16)).mean()


# ------------------------------------------------------------------------------- many bags
def test_shard_and_unshard():
    bags = [f"b{i}" for i in range(7)]
    parts = [shard(bags, r, 3) for r in range(3)]
    assert parts == [["b0", "b3", "b6"], ["b1", "b4"], ["b2", "b5"]]
    assert unshard([b for p in parts for b in p], 3) == bags
    with pytest.raises(ValueError, match="outside world size"):
        shard(bags, 3, 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_merge_to_the_single_process_result(weights, tmp_path):
    """torchrun-style: RANK/WORLD_SIZE env, each rank one bag, confusion summed by all_reduce."""
    bags = []
    for i in range(2):
        bag = tmp_path / f"bag{i}"
        write_camera_bag(_frames(3, seed=10 + i), bag)
        bags.append(str(bag))
    single = tmp_path / "single.json"
    assert bag_eval.main([*bags, "--weights", str(weights), "--json", str(single), "--threads", "1"]) == 0
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bevanet_core.cli.bag_eval",
                    *bags,
                    "--weights",
                    str(weights),
                    "--json",
                    str(tmp_path / "dist.json"),
                    "--threads",
                    "1",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    a, b = json.loads(single.read_text()), json.loads((tmp_path / "dist.json").read_text())
    assert b["world_size"] == 2 and b["frames"] == a["frames"] == 6
    assert [x["bag"] for x in b["bags"]] == bags  # original order
    assert b["per_class_iou"] == a["per_class_iou"] and b["miou"] == a["miou"]
    assert "[rank 1]" in outputs[1] and "[rank 0]" in outputs[0]


def test_ros1_bag_evaluates_and_converts_to_a_ros2_output_bag(seg, tmp_path):
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    Image, Header, Time = (
        ts.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    frames = _frames(3, seed=7)
    path = tmp_path / "drive.bag"
    with Writer1(path) as w:
        cam = w.add_connection("/cam/image_raw", Image.__msgtype__, typestore=ts)
        lab = w.add_connection("/cam/labels", Image.__msgtype__, typestore=ts)
        for i, f in enumerate(frames):
            head = Header(seq=i, stamp=Time(sec=5, nanosec=i * 1000), frame_id="cam")
            h, wd = f.label.shape
            w.write(
                cam,
                5 * 10**9 + i * 1000,
                ts.serialize_ros1(
                    Image(
                        header=head,
                        height=h,
                        width=wd,
                        encoding="rgb8",
                        is_bigendian=0,
                        step=wd * 3,
                        data=f.rgb.reshape(-1),
                    ),
                    Image.__msgtype__,
                ),
            )
            w.write(
                lab,
                5 * 10**9 + i * 1000,
                ts.serialize_ros1(
                    Image(
                        header=head,
                        height=h,
                        width=wd,
                        encoding="mono8",
                        is_bigendian=0,
                        step=wd,
                        data=f.label.reshape(-1),
                    ),
                    Image.__msgtype__,
                ),
            )
    out = tmp_path / "drive_out"
    res = evaluate.evaluate_bag(
        path, evaluate.RuntimeProcessor(seg), evaluate.EvalOptions(label_topic="/cam/labels", out_bag=out)
    )
    assert (res.frames, res.labelled, res.errors) == (3, 3, [])
    cm = ConfusionMatrix(11)
    for f in frames:
        cm.update(seg.segment(f.rgb).mask, f.label)
    assert np.array_equal(res.confusion.matrix, cm.matrix)
    with BagReader(out) as ob:
        assert not ob.ros1 and ob.topics["/cam/image_raw"].count == 3
        raws = list(ob.messages(["/cam/image_raw", evaluate.MASK_TOPIC]))
        imgs = [ob.deserialize(r) for r in raws if r.topic == "/cam/image_raw"]
        masks = [ob.deserialize(r) for r in raws if r.topic == evaluate.MASK_TOPIC]
    assert np.array_equal(decode.image_to_rgb(imgs[2]), frames[2].rgb)
    assert (
        [messages.stamp_ns(m) for m in masks]
        == [messages.stamp_ns(m) for m in imgs]
        == [5 * 10**9 + i * 1000 for i in range(3)]
    )
