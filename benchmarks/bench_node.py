#!/usr/bin/env python3
"""End-to-end latency and throughput of the ROS 2 node against the bare runtime, same frames.

    python benchmarks/bench_node.py --frames ../shared/data/camvid/val --num-frames 10 --runs 3 \
        --json bench_node.json

Three measurements, each repeated `--runs` times (the table shows the median of the runs):

  runtime     Segmenter.segment() on each frame in this process (decoded RGB in memory)
  node/serial the node in its own process (`python -m bevanet_ros.segmentation_node`), one frame
              in flight: publish a sensor_msgs/Image, wait for its mask. Latency = publish -> mask
              received, so it includes serialisation, DDS, the executor, the worker and publishing.
  node/flood  the same node while frames are published at `--flood-hz` (a camera rate, above what
              the model sustains on a CPU): throughput = masks per second, latency = stamp -> mask,
              stale frames dropped by the node counted.

The three are interleaved run by run, so a shared machine's changing load hits them alike.

Without --weights the shipped CamVid model is used if present, else a seeded random BEVANet-S
(speed does not depend on the weights; the JSON says which). Not a test: numbers depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from bevanet_core.hardware import machine
from bevanet_core.timing import latency_stats, time_call

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--frames",
        type=Path,
        default=REPO.parent / "shared" / "data" / "camvid" / "val",
        help="folder of images (png/jpg) to use as camera frames",
    )
    p.add_argument("--num-frames", type=int, default=10, help="frames per run")
    p.add_argument("--runs", type=int, default=3, help="repetitions; the table shows the median")
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: shipped, else seeded)")
    p.add_argument("--input-size", default="", help="network input WxH (default: the weights' own)")
    p.add_argument("--num-threads", type=int, default=0, help="inference threads for both (0 = default)")
    p.add_argument("--backend", default="auto", help="backend for both (default auto)")
    p.add_argument("--precision", default="fp32", help="precision for both; int8 needs an int8 .onnx")
    p.add_argument(
        "--flood-hz",
        type=float,
        default=30.0,
        help="publish rate of the flood run (a camera rate, far above the model's on a CPU)",
    )
    p.add_argument("--flood-s", type=float, default=8.0, help="duration of each flood run")
    p.add_argument("--encoding", default="bgr8", choices=("rgb8", "bgr8"), help="camera encoding published")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


def load_frames(folder: Path, n: int) -> list[np.ndarray]:
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))[:n]
    if not files:
        raise SystemExit(f"no png/jpg images in {folder} (pass --frames)")
    return [np.asarray(PILImage.open(f).convert("RGB")) for f in files]


def resolve_weights(args: argparse.Namespace, tmp: Path) -> dict[str, str]:
    from bevanet_core.checkpoint import DEFAULT_WEIGHTS, ModelInfo, save_weights

    if args.weights is not None:
        if not args.weights.is_file():
            raise SystemExit(f"--weights {args.weights} does not exist")
        return {"path": str(args.weights), "kind": "given"}
    if DEFAULT_WEIGHTS.is_file():
        return {"path": str(DEFAULT_WEIGHTS), "kind": "shipped CamVid"}
    import torch

    from bevanet_core.models import build_model

    torch.manual_seed(0)
    path = tmp / "bevanet_s_seeded.safetensors"
    save_weights(
        build_model("bevanet_s", num_classes=11).eval(),
        path,
        ModelInfo.default("bevanet_s", 11, input_size=(480, 360)),
    )
    return {"path": str(path), "kind": "seeded random BEVANet-S (shipped weights absent)"}


def summary(values: list[float]) -> dict[str, float]:
    """Median, p95 and count of latencies in ms (bevanet_core.timing's statistics)."""
    stats = latency_stats(values)
    return {"median": stats["p50"], "p95": stats["p95"], "n": stats["n"]}


# ---------------------------------------------------------------- bare runtime


def runtime_pass(seg: Any, frames: list[np.ndarray]) -> dict[str, Any]:
    """One pass of the bare runtime over the frames (decoded RGB already in memory)."""
    t0 = time.perf_counter()
    lat = [time_call(lambda f=f: seg.segment(f, "rgb8"))[0] for f in frames]
    return {"latency_ms": summary(lat), "fps": len(frames) / (time.perf_counter() - t0)}


# ---------------------------------------------------------------- node


class NodeUnderTest:
    """The node in a subprocess plus a probe node here (publisher + mask subscriber)."""

    def __init__(self, weights: str, args: argparse.Namespace, domain: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        cmd = [
            sys.executable,
            "-m",
            "bevanet_ros.segmentation_node",
            "--ros-args",
            "-p",
            f"{'engine' if str(weights).endswith('.onnx') else 'weights'}:={weights}",
            "-p",
            f"num_threads:={args.num_threads}",
            "-p",
            f"backend:={args.backend}",
            "-p",
            f"precision:={args.precision}",
            "-r",
            "image:=/bench/image",
            "-p",
            "publish_color_mask:=false",
            "-p",
            "publish_overlay:=false",
        ]
        if args.input_size:
            w, h = args.input_size.lower().split("x")
            cmd += ["-p", f"input_width:={int(w)}", "-p", f"input_height:={int(h)}"]
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = Node("bench_probe", context=self.ctx)
        self.received: list[tuple] = []  # (stamp_ns, receive time.time_ns())
        self._cond = threading.Condition()
        self.node.create_subscription(
            Image,
            "/segmentation/mask",
            self._on_mask,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.pub = self.node.create_publisher(
            Image, "/bench/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        )
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.Image = Image

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_mask(self, msg) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._cond:
            self.received.append((stamp, now))
            self._cond.notify_all()

    def wait_ready(self, frame_msg, timeout: float = 600.0) -> None:
        """Publishes until the first mask comes back (model loaded, DDS matched)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit("node exited:\n" + self.log.read()[-3000:])
            self.publish(frame_msg)
            with self._cond:
                if self._cond.wait_for(lambda: self.received, 1.0):
                    time.sleep(1.0)
                    self.received.clear()
                    return
        raise SystemExit("node did not answer within the timeout")

    def publish(self, msg) -> int:
        stamp = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        self.pub.publish(msg)
        return stamp

    def wait_for(self, stamp: int, timeout: float = 120.0) -> int | None:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(s == stamp for s, _ in self.received), timeout)
            if not ok:
                return None
            return next(r for s, r in self.received if s == stamp)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(5.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
        self.proc.send_signal(2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        os.unlink(self.log.name)


def image_msg(Image, rgb: np.ndarray, encoding: str):
    orders = {"rgb8": rgb, "bgr8": rgb[..., ::-1]}
    if encoding not in orders:
        raise ValueError(f"--encoding must be one of {sorted(orders)}, got {encoding!r}")
    msg = Image()
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.data, msg.step = np.ascontiguousarray(orders[encoding]).tobytes(), int(rgb.shape[1]) * 3
    msg.header.frame_id = "bench"
    return msg


def serial_pass(nut: NodeUnderTest, msgs: list[Any]) -> dict[str, Any]:
    """One frame in flight: publish, wait for its mask, next."""
    lat = []
    t0 = time.perf_counter()
    for m in msgs:
        stamp = nut.publish(m)
        got = nut.wait_for(stamp)
        if got is None:
            raise SystemExit("a frame got no mask within 120 s")
        lat.append((got - stamp) / 1e6)
    return {"latency_ms": summary(lat), "fps": len(msgs) / (time.perf_counter() - t0)}


def flood_pass(nut: NodeUnderTest, msgs: list[Any], rate_hz: float, seconds: float) -> dict[str, Any]:
    """Frames published at `rate_hz` for `seconds`: masks per second, stamp -> mask latency."""
    with nut._cond:
        nut.received.clear()
    sent = set()
    period = 1.0 / rate_hz
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        sent.add(nut.publish(msgs[i % len(msgs)]))
        i += 1
        time.sleep(max(0.0, t0 + i * period - time.monotonic()))
    end_ns = time.time_ns()
    time.sleep(3.0)  # let the frame in flight finish
    with nut._cond:
        got = [(s_, r) for s_, r in nut.received if s_ in sent]
    return {
        "sent": len(sent),
        "masks": len(got),
        "fps": sum(r <= end_ns for _, r in got) / seconds,
        "latency_ms": summary([(r - s_) / 1e6 for s_, r in got]),
        "dropped": len(sent) - len(got),
    }


def med(runs: list[dict[str, Any]], *keys: str) -> float:
    values = []
    for r in runs:
        v: Any = r
        for k in keys:
            v = v[k]
        values.append(v)
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    frames = load_frames(args.frames, args.num_frames)
    import torch

    from bevanet_core.runtime import Segmenter, SegmenterConfig

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    runtime_runs, serial_runs, flood_runs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        weights = resolve_weights(args, Path(tmp))
        seg = Segmenter(
            SegmenterConfig(
                weights=weights["path"],
                input_size=args.input_size or None,
                backend=args.backend,
                precision=args.precision,
                num_threads=args.num_threads or None,
            )
        )
        seg.segment(frames[0])  # warm-up
        input_size = list(seg.input_size)
        backend_name = seg.backend.name
        nut = NodeUnderTest(weights["path"], args, random.SystemRandom().randint(1, 200))
        try:
            msgs = [image_msg(nut.Image, f, args.encoding) for f in frames]
            nut.wait_ready(msgs[0])
            # interleaved, so that a shared machine's load drifts over all three alike
            for run in range(args.runs):
                runtime_runs.append(runtime_pass(seg, frames))
                serial_runs.append(serial_pass(nut, msgs))
                flood_runs.append(flood_pass(nut, msgs, args.flood_hz, args.flood_s))
                print(
                    f"run {run + 1}/{args.runs}: "
                    f"runtime {runtime_runs[-1]['latency_ms']['median']:.0f} ms, "
                    f"node {serial_runs[-1]['latency_ms']['median']:.0f} ms, flood "
                    f"{flood_runs[-1]['fps']:.2f} fps",
                    file=sys.stderr,
                )
        finally:
            nut.close()
            seg.close()
    runtime = {"runs": runtime_runs, "input_size": input_size, "backend": backend_name}
    node = {"serial": serial_runs, "flood": flood_runs, "encoding": args.encoding}
    h, w = frames[0].shape[:2]
    result = {
        "frames": {"folder": str(args.frames), "count": len(frames), "size": [w, h]},
        "weights": weights,
        "network_input": runtime["input_size"],
        "runs": args.runs,
        "num_threads": args.num_threads,
        "backend": runtime["backend"],
        "precision": args.precision,
        "machine": {**machine("cpu"), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "runtime": runtime["runs"],
        "node": node,
    }
    rows = [
        (
            "bare runtime (segment)",
            med(runtime["runs"], "latency_ms", "median"),
            med(runtime["runs"], "latency_ms", "p95"),
            med(runtime["runs"], "fps"),
            "-",
        ),
        (
            "node, one frame in flight",
            med(node["serial"], "latency_ms", "median"),
            med(node["serial"], "latency_ms", "p95"),
            med(node["serial"], "fps"),
            "-",
        ),
        (
            f"node, flooded at {args.flood_hz:g} Hz",
            med(node["flood"], "latency_ms", "median"),
            med(node["flood"], "latency_ms", "p95"),
            med(node["flood"], "fps"),
            f"{med(node['flood'], 'dropped'):.0f} of {med(node['flood'], 'sent'):.0f}",
        ),
    ]
    table = [
        "| measurement | latency median (ms) | latency p95 (ms) | throughput (fps) | dropped |",
        "|---|---|---|---|---|",
    ]
    table += [f"| {n} | {a:.1f} | {b:.1f} | {c:.2f} | {d} |" for n, a, b, c, d in rows]
    result["table"] = table
    print(
        f"{len(frames)} frames {w}x{h} from {args.frames}, network input "
        f"{runtime['input_size'][0]}x{runtime['input_size'][1]}, weights: {weights['kind']}, "
        f"median of {args.runs} runs, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print("\n".join(table))
    if args.json is not None:
        tmp_path = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp_path.write_text(json.dumps(result, indent=2))
        os.replace(tmp_path, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
