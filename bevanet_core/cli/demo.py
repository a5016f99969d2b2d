"""bevanet-demo: replay the shipped sample drive through the node's runtime and show the results.

With no arguments it reads the sample bag that the repository ships (bags/solid_white_right,
JPEG camera frames of a real highway drive), segments every frame with the shipped default
model exactly as the ROS node does, and writes to outputs/demo/:

    segmented_bag/   rosbag2 (MCAP): the inputs plus /segmentation/{mask,color_mask,overlay}
    overlay.mp4      the overlays as a video at the camera rate
    montage.png      camera | overlay rows of a few frames
    report.json      frames, latency p50/p90/p99, throughput (and mIoU when the bag has labels)
    report.md        the same as a table; plot.png: per-frame latency

`--through-node` sends the frames over DDS to a running segmentation node instead (needs rclpy).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from ..bags import evaluate as E
from ..bags import report as R
from ..bags.reader import BagReadError
from ..bags.writer import BagWriteError
from .bag_eval import add_model_args, build_segmenter, machine_meta, model_meta, summary_line

SAMPLE_BAG = "solid_white_right"
PACKAGE = "bevanet_ros"


def sample_bag_candidates() -> List[Path]:
    """Where the shipped sample bag can be: the source tree, a colcon install, a pip install."""
    here = Path(__file__).resolve()
    places = [here.parents[2] / "bags" / SAMPLE_BAG]  # source checkout / editable install
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            places.append(Path(prefix) / "share" / PACKAGE / "bags" / SAMPLE_BAG)
    places.append(Path(sys.prefix) / "share" / PACKAGE / "bags" / SAMPLE_BAG)
    return places


def find_sample_bag() -> Path:
    for place in sample_bag_candidates():
        if (place / "metadata.yaml").is_file():
            return place
    tried = "\n  ".join(str(p) for p in sample_bag_candidates())
    raise FileNotFoundError(f"the shipped sample bag '{SAMPLE_BAG}' was not found; looked in:\n  {tried}\n"
                            "pass one with --bag (see bags/README.md to record your own)")


def default_weights_problem() -> Optional[str]:
    """Why the shipped default model cannot be used, or None when it is there."""
    from ..checkpoint import DEFAULT_WEIGHTS

    if DEFAULT_WEIGHTS.is_file():
        return None
    return (f"the shipped default model is not there yet: {DEFAULT_WEIGHTS}\n"
            "It is the CamVid-trained BEVANet-S made by the training pipeline "
            "(bevanet-train --config training/bevanet-s_camvid-480x360.yaml) and shipped in "
            "bevanet_core/weights/; this checkout does not have it. The demo never runs untrained weights.\n"
            "Run it with a checkpoint of your own: bevanet-demo --weights path/to/model.safetensors")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bevanet-demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bag", type=Path, default=None, help="bag to replay (default: the shipped sample)")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (replaced files)")
    p.add_argument("--image-topic", default=None, help="camera topic (default: the bag's only image topic)")
    p.add_argument("--label-topic", default=E.DEFAULT_LABEL_TOPIC, help="ground truth, if the bag has it")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    p.add_argument("--through-node", action="store_true",
                   help="drive a running segmentation node over DDS instead of the in-process runtime")
    p.add_argument("--node-input", default="/camera/image_raw",
                   help="(--through-node) topic the node subscribes (remap its `image` to it)")
    p.add_argument("--node-mask", default="/segmentation/mask", help="(--through-node) node's mask topic")
    p.add_argument("--node-timeout", type=float, default=5.0,
                   help="(--through-node) seconds to wait for each mask before counting the frame dropped")
    add_model_args(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        bag = args.bag if args.bag is not None else find_sample_bag()
    except FileNotFoundError as err:
        print(f"bevanet-demo: {err}", file=sys.stderr)
        return 1
    if not bag.exists():
        print(f"bevanet-demo: bag {bag} does not exist", file=sys.stderr)
        return 1
    if args.weights is None and args.backend != "tensorrt":
        problem = default_weights_problem()
        if problem:
            print(f"bevanet-demo: {problem}", file=sys.stderr)
            return 1
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"bevanet-demo: replaying {bag}")
    try:
        seg = build_segmenter(args)
    except (ValueError, OSError, ImportError) as err:
        print(f"bevanet-demo: cannot load the model: {err}", file=sys.stderr)
        return 1
    processor = E.RuntimeProcessor(seg)
    if args.through_node:
        processor = _node_processor(args, processor)
        if processor is None:
            return 1
    video = None if args.no_video else R.VideoSink(out / "overlay.mp4")
    shown = [0.0]

    def on_frame(rec: E.FrameRecord) -> None:
        if video is not None and rec.overlay is not None:
            video.write(rec.overlay, rec.stamp)
        now = time.monotonic()
        if now - shown[0] > 2.0:
            shown[0] = now
            print(f"  frame {rec.index + 1}: {rec.latency_ms:.0f} ms", flush=True)

    options = E.EvalOptions(image_topic=args.image_topic, label_topic=args.label_topic,
                            max_frames=args.max_frames, out_bag=out / "segmented_bag", overwrite=True,
                            frame_callback=on_frame)
    try:
        result = E.evaluate_bag(bag, processor, options)
    except (E.BagEvalError, BagWriteError, BagReadError) as err:
        if video is not None:
            video.abort()
        print(f"bevanet-demo: {err}", file=sys.stderr)
        return 1
    finally:
        close = getattr(processor, "shutdown", None)
        if close is not None:
            close()
    video_path = video.close() if video is not None else None
    meta = {"model": model_meta(seg, args), "machine": machine_meta(), "bag_file": str(bag),
            "mode": "dds-node" if args.through_node else "in-process runtime"}
    report = E.build_report([result], processor.class_names, None, meta)
    written = {
        "output bag": result.out_bag,
        "overlay video": str(video_path) if video_path else None,
        "montage": R.write_montage(result.samples, processor.colorize, out / "montage.png"),
        "report (JSON)": R.write_json(report, out / "report.json"),
        "report (markdown)": R.write_markdown(report, out / "report.md"),
    }
    try:
        written["latency plot"] = R.write_plot(report, result.latencies_ms, out / "plot.png")
    except ImportError:
        pass
    print(summary_line(report))
    for e in report["errors"]:
        print(f"  error: {e['error']}", file=sys.stderr)
    print(f"outputs in {out.resolve()}:")
    for kind, path in written.items():
        if path:
            print(f"  {kind:18s} {path}")
    if result.out_bag:
        print(f"replay it: ros2 bag play {result.out_bag}   (or open the .mcap in Foxglove Studio)")
    return 1 if report["errors"] else 0


def _node_processor(args: argparse.Namespace, local: E.RuntimeProcessor):
    """The DDS mode, behind this function: only here is rclpy imported (by NodeClient)."""
    try:
        return NodeClient(args.node_input, args.node_mask, local, timeout_s=args.node_timeout)
    except ImportError as err:
        print(f"bevanet-demo: --through-node needs rclpy and sensor_msgs ({err}); source a ROS 2 "
              "installation or install the ROS 2 wheels (scripts/bootstrap.sh)", file=sys.stderr)
    except TimeoutError as err:
        print(f"bevanet-demo: {err}", file=sys.stderr)
    return None


class NodeClient:
    """FrameProcessor over DDS: each frame goes to a running segmentation node, its mask comes back.

    The node runs as deployed, in its own process (`ros2 run bevanet_ros segmentation_node
    --ros-args -r image:=/camera/image_raw`), so the latency measured here is publish -> node ->
    mask received, transport included. Frames are sent in lockstep (the next one after the mask
    of the previous one, or after `timeout_s`: then the frame counts as dropped). `local`
    supplies the class names and colours for the report, the colour masks and the overlays.
    rclpy is imported when a NodeClient is created, never when this module is imported.
    """

    def __init__(self, input_topic: str, mask_topic: str, local: E.RuntimeProcessor,
                 timeout_s: float = 5.0, discovery_s: float = 15.0):
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self._rclpy, self._Image = rclpy, Image
        self.local = local
        self.class_names = local.class_names
        self.num_classes = local.num_classes
        self.timeout_s = float(timeout_s)
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self.node = rclpy.create_node("bevanet_bag_player")
        reliable = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        # best effort receives from reliable and best-effort publishers alike
        any_pub = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub = self.node.create_publisher(Image, input_topic, reliable)
        self.sub = self.node.create_subscription(Image, mask_topic, self._on_mask, any_pub)
        self._masks: dict = {}
        deadline = time.monotonic() + discovery_s
        while time.monotonic() < deadline:
            if self.pub.get_subscription_count() > 0 and self.node.count_publishers(mask_topic) > 0:
                break
            rclpy.spin_once(self.node, timeout_sec=0.05)
        else:
            self.shutdown()
            raise TimeoutError(
                f"no segmentation node found within {discovery_s:.0f} s: nothing subscribes {input_topic} "
                f"and publishes {mask_topic}. Start one, e.g. `ros2 run bevanet_ros segmentation_node "
                f"--ros-args -r image:={input_topic}`, or set --node-input/--node-mask")

    def _on_mask(self, msg) -> None:
        import numpy as np

        rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width]
        self._masks[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = rows.copy()

    def process(self, rgb, header):
        msg = self._Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
        msg.header.frame_id = str(header.frame_id)
        msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
        msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, int(rgb.shape[1]) * 3
        msg.data = rgb.tobytes()
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        t0 = time.perf_counter()
        self.pub.publish(msg)
        while key not in self._masks and time.perf_counter() - t0 < self.timeout_s:
            self._rclpy.spin_once(self.node, timeout_sec=0.002)
        latency = (time.perf_counter() - t0) * 1e3
        mask = self._masks.pop(key, None)
        self._masks.clear()  # late masks of dropped frames must not pile up
        return mask, latency, {}

    def colorize(self, mask):
        return self.local.colorize(mask)

    def overlay(self, rgb, mask, alpha):
        return self.local.overlay(rgb, mask, alpha)

    def shutdown(self) -> None:
        if self.node is not None:
            self.node.destroy_node()
            self.node = None
        if self._owns_context and self._rclpy.ok():
            self._rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
