"""bevanet-demo: replay the shipped sample drive through the node's runtime and show the results.

With no arguments it reads the sample bag that the repository ships (bags/solid_white_right,
JPEG camera frames of a real highway drive), segments every frame with the shipped default
model exactly as the ROS node does, and writes to outputs/demo/:

    segmented_bag/   rosbag2 (MCAP): the inputs plus /segmentation/{mask,color_mask,overlay}
    overlay.mp4      the overlays as a video at the camera rate, with the class colour legend
    montage.png      camera | overlay rows of a few frames, column titles and the class colour legend
    report.json      frames, latency p50/p90/p99, throughput (and mIoU when the bag has labels)
    report.md        the same as a table; plot.png: per-frame latency

`--spawn-node` starts the ROS 2 segmentation node as deployed (its own process) and replays the
bag through it over DDS; `--through-node` uses a node that is already running. Both need rclpy
and the ROS package, which supplies them: the `bevanet-demo` console script
(`bevanet_ros.tools`) passes its DDS client and node launcher to `main` (`scripts/demo.sh` uses
`--spawn-node` whenever rclpy imports).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..bags import report
from ..bags.evaluate import (
    BagEvalError,
    EvalOptions,
    FrameRecord,
    build_report,
    evaluate_bag,
)
from ..bags.reader import BagReadError
from ..bags.writer import BagWriteError, bag_size
from ..serving.foxglove_view import ReplayBuffer
from .args import add, make_parser
from .bag_eval import NodeClientFactory, build_processor, machine_meta, model_meta, summary_line
from .bag_eval_args import add_node_topic_args
from .common import (
    add_foxglove_args,
    add_model_args,
    apply_input_policy,
    extras_guard,
    foxglove_callback,
    start_foxglove,
)
from .validate import check_output_dir, float_range

# (command-line arguments, log file) -> the started node's process
NodeSpawner = Callable[[argparse.Namespace, Path], subprocess.Popen]

SAMPLE_BAG = "solid_white_right"
PACKAGE = "bevanet_ros"


def sample_bag_candidates() -> list[Path]:
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
    raise FileNotFoundError(
        f"the shipped sample bag '{SAMPLE_BAG}' was not found; looked in:\n  {tried}\n"
        "pass one with --bag (see bags/README.md to record your own)"
    )


def default_weights_problem() -> str | None:
    """Why the shipped default model cannot be used, or None when it is there."""
    from ..checkpoint import DEFAULT_WEIGHTS

    if DEFAULT_WEIGHTS.is_file():
        return None
    return (
        f"the shipped default model is not there yet: {DEFAULT_WEIGHTS}\n"
        "It is the CamVid-trained BEVANet-S made by the training pipeline "
        "(bevanet-train --config training/bevanet-s_camvid-480x360.yaml) and shipped in "
        "bevanet_core/weights/; this checkout does not have it. "
        "The demo never runs untrained weights.\n"
        "Run it with a checkpoint of your own: bevanet-demo --weights path/to/model.safetensors"
    )


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("bevanet-demo", __doc__.split("\n\n")[0])
    p.add_argument("--bag", type=Path, default=None, help="bag to replay (default: the shipped sample)")
    add(p, "out", default=Path("outputs/demo"), note="its files are replaced")
    add(p, "image_topic", note="the one read (default: the bag's only image topic)")
    add(p, "label_topic")
    add(p, "max_frames")
    p.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    add(p, "through_node")
    p.add_argument(
        "--spawn-node",
        action="store_true",
        help="start the segmentation node in its own process and replay through it over DDS",
    )
    p.add_argument(
        "--node-start-timeout",
        type=float_range(0.0, 3600.0, lo_open=True),
        default=120.0,
        help="(--spawn-node/--through-node) seconds to wait for the node to come up",
    )
    add_node_topic_args(p, "with --through-node or --spawn-node")
    add_model_args(p)
    add_foxglove_args(p)
    p.add_argument(
        "--loop",
        action="store_true",
        help="(--foxglove) after the replay and its outputs, keep serving the live view, sending "
        "the replayed frames again and again at the camera rate until Ctrl-C",
    )
    return p


@extras_guard("bevanet-demo")
def main(
    argv: Sequence[str] | None = None,
    node_client: NodeClientFactory | None = None,
    spawn_node: NodeSpawner | None = None,
) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.loop and args.foxglove is None:
        parser.error("--loop keeps the Foxglove live view serving: give it with --foxglove [PORT]")
    apply_input_policy(args)  # $BEVANET_MAX_PIXELS checked now, not at every frame
    try:
        bag = args.bag if args.bag is not None else find_sample_bag()
    except FileNotFoundError as err:
        print(f"bevanet-demo: {err}", file=sys.stderr)
        return 1
    if not bag.exists():
        print(f"bevanet-demo: bag {bag} does not exist", file=sys.stderr)
        return 1
    check_output_dir(parser, "--out", args.out, [bag])
    if args.weights is None and args.backend != "tensorrt":
        problem = default_weights_problem()
        if problem:
            print(f"bevanet-demo: {problem}", file=sys.stderr)
            return 1
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"bevanet-demo: replaying {bag}")
    node = None
    if args.spawn_node:
        if spawn_node is None:
            print(
                "bevanet-demo: --spawn-node needs the ROS package's node launcher; run the "
                "bevanet-demo console script that the package installs",
                file=sys.stderr,
            )
            return 1
        args.through_node = True
        node = args.node_process = spawn_node(args, out / "node.log")
        print(f"bevanet-demo: started the segmentation node (pid {node.pid}, log {out / 'node.log'})")
    try:
        built = build_processor(args, "bevanet-demo", node_client)
        if built is None:
            if node is not None:
                tail = (out / "node.log").read_text(errors="replace").strip().splitlines()[-5:]
                print("the node's last log lines:\n  " + "\n  ".join(tail), file=sys.stderr)
            return 1
        return _replay(args, bag, out, *built)
    finally:
        if node is not None:
            stop_process(node)


def stop_process(node: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGINT (a clean rclpy shutdown), then SIGKILL if it does not exit in time."""
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout_s)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def _replay(args: argparse.Namespace, bag: Path, out: Path, seg, processor) -> int:
    view = start_foxglove(args, "bevanet-demo")
    try:
        return _replay_to(args, bag, out, seg, processor, view)
    finally:
        if view is not None:
            view.close()


def _replay_to(args: argparse.Namespace, bag: Path, out: Path, seg, processor, view) -> int:
    legend = report.Legend.of(processor.class_names, processor.colorize)
    video = None if args.no_video else report.VideoSink(out / "overlay.mp4", legend=legend)
    shown = [0.0]
    live = foxglove_callback(view, processor.colorize) if view is not None else None
    again = ReplayBuffer() if view is not None and args.loop else None

    def on_frame(rec: FrameRecord) -> None:
        if video is not None and rec.overlay is not None:
            video.write(rec.overlay, rec.stamp)
        if live is not None:
            live(rec)
        if again is not None:
            again.add(rec.stamp, rec.rgb, processor.colorize(rec.mask), rec.overlay, rec.latency_ms)
        now = time.monotonic()
        if now - shown[0] > 2.0:
            shown[0] = now
            print(f"  frame {rec.index + 1}: {rec.latency_ms:.0f} ms", flush=True)

    options = EvalOptions(
        image_topic=args.image_topic,
        label_topic=args.label_topic,
        max_frames=args.max_frames,
        out_bag=out / "segmented_bag",
        overwrite=True,
        frame_callback=on_frame,
    )
    try:
        result = evaluate_bag(bag, processor, options)
    except (BagEvalError, BagWriteError, BagReadError) as err:
        if video is not None:
            video.abort()
        print(f"bevanet-demo: {err}", file=sys.stderr)
        return 1
    finally:
        close = getattr(processor, "shutdown", None)
        if close is not None:
            close()
    video_path = video.close() if video is not None else None
    meta = {
        "model": model_meta(seg, args, processor),
        "machine": machine_meta(),
        "bag_file": str(bag),
        "mode": "dds-node" if args.through_node else "in-process runtime",
        "node_started_by_demo": bool(args.spawn_node),
    }
    summary = build_report([result], processor.class_names, None, meta)
    written = {
        "output bag": (f"{result.out_bag} ({bag_size(Path(result.out_bag)) / 1e6:.1f} MB)" if result.out_bag else None),
        "overlay video": f"{video_path} ({video.codec})" if video_path else None,
        "montage": report.write_montage(result.samples, processor.colorize, out / "montage.png", processor.class_names),
        "report (JSON)": report.write_json(summary, out / "report.json"),
        "report (markdown)": report.write_markdown(summary, out / "report.md"),
    }
    try:
        written["latency plot"] = report.write_plot(summary, result.latencies_ms, out / "plot.png")
    except ImportError:
        pass
    print(summary_line(summary))
    for e in summary["errors"]:
        print(f"  error: {e['error']}", file=sys.stderr)
    print(f"outputs in {out.resolve()}:")
    for kind, path in written.items():
        if path:
            print(f"  {kind:18s} {path}")
    if result.out_bag:
        print(f"replay it: ros2 bag play {result.out_bag}   (or open the .mcap in Foxglove Studio)")
    code = 1 if summary["errors"] else 0
    if again is not None and again.frames:
        _serve_again(view, again)
    return code


def _serve_again(view, frames: ReplayBuffer) -> None:
    """--loop: the replayed frames to the live view again and again, until Ctrl-C."""
    kept = f"the first {len(frames.frames)} frames (1 GB of images)" if frames.full else f"{len(frames.frames)} frames"
    print(f"bevanet-demo: --loop: sending {kept} to {view.url} again and again; Ctrl-C stops", flush=True)
    try:
        frames.replay(view)
    except KeyboardInterrupt:
        print("bevanet-demo: stopped (Ctrl-C)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
