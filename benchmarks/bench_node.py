#!/usr/bin/env python3
"""End-to-end latency and throughput of the ROS 2 node against the bare runtime and the authors'
speed protocol, same frames, one run.

    taskset -c 1 python benchmarks/bench_node.py --frames ../shared/data/camvid/val --num-frames 10 \
        --runs 3 --json bench_node.json

By default the node is started with **no parameters** (the image remapping aside): the model,
backend, precision and threads are the defaults a user gets (`bevanet_core/options.py`), and the
bare runtime is built with the same defaults; `--backend`, `--precision`, `--num-threads` and
`--input-size` set both. Both share one cache folder, so `backend: auto` makes its choice once
(the first start, int8 quantization and its guard included) and the node reuses it; the node's
pipeline is read from its `/diagnostics` and printed beside the runtime's.

Four measurements, each repeated `--runs` times and interleaved run by run, so that a shared
machine's changing load hits them alike (the table shows the median of the runs):

  authors'    the BEVANet/PIDNet authors' speed protocol: random input, batch 1, fp32 eager
              PyTorch, BN not fused, no final upsampling (bevanet_core.runtime.benchmark)
  runtime     Segmenter.segment() on each frame in this process (decoded RGB in memory)
  node/serial the node in its own process (`python -m bevanet_ros.segmentation_node`), one frame
              in flight: publish a sensor_msgs/Image, wait for its mask. Latency = header stamp
              (set at publish) -> mask received, so it includes serialisation, DDS, the
              executor, the worker, publishing and the mask's delivery back.
  node/flood  the same node while frames are published at `--flood-hz` (a camera rate, above what
              the model sustains on a CPU): throughput = masks per second while frames arrive
              faster than served (the node keeps the latest frame and drops stale ones, counted),
              latency p50/p99 = header stamp -> mask received.

Without --weights the shipped CamVid model is used if present, else a seeded random BEVANet-S
(the JSON says which). Not a test: numbers depend on the machine and its load.
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
    p.add_argument("--num-threads", type=int, default=None, help="inference threads for both (default: the node's)")
    p.add_argument("--backend", default=None, help="backend for both (default: the node's)")
    p.add_argument("--precision", default=None, help="precision for both (default: the node's)")
    p.add_argument(
        "--flood-hz",
        type=float,
        default=30.0,
        help="publish rate of the flood run (a camera rate, far above the model's on a CPU)",
    )
    p.add_argument("--flood-s", type=float, default=8.0, help="duration of each flood run")
    p.add_argument("--encoding", default="bgr8", choices=("rgb8", "bgr8"), help="camera encoding published")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--no-reference", action="store_true", help="skip the authors' protocol")
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
    return {"median": stats["p50"], "p95": stats["p95"], "p99": stats["p99"], "n": stats["n"]}


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
            "-r",
            "image:=/bench/image",
        ]
        # only what was asked: with no options the node starts with no parameters at all
        if weights is not None:
            cmd += ["-p", f"{'engine' if Path(weights).suffix in ('.onnx', '.xml') else 'weights'}:={weights}"]
        for name, value in (
            ("num_threads", args.num_threads),
            ("backend", args.backend),
            ("precision", args.precision),
        ):
            if value is not None:
                cmd += ["-p", f"{name}:={value}"]
        if args.input_size:
            w, h = args.input_size.lower().split("x")
            cmd += ["-p", f"input_width:={int(w)}", "-p", f"input_height:={int(h)}"]
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = Node("bench_probe", context=self.ctx)
        self.received: list[tuple] = []  # (stamp_ns, receive time.time_ns())
        self.pipeline: dict | None = None  # what the node runs, from its /diagnostics
        from diagnostic_msgs.msg import DiagnosticArray

        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
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

    def _on_diagnostics(self, msg) -> None:
        from bevanet_core.serving.model_loading import pipeline_from_values

        for status in msg.status:
            found = pipeline_from_values((v.key, v.value) for v in status.values)
            if found is not None:
                self.pipeline = found

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
    from bevanet_core.runtime import Segmenter, SegmenterConfig
    from bevanet_core.runtime.benchmark import reference_protocol

    # one cache for both: backend auto decides once (first start), the node reuses the decision
    os.environ.setdefault("BEVANET_CACHE", str(Path(tempfile.gettempdir()) / "bevanet_bench_node_cache"))
    asked = {
        k: v
        for k, v in (("backend", args.backend), ("precision", args.precision), ("num_threads", args.num_threads))
        if v is not None
    }
    reference_runs, runtime_runs, serial_runs, flood_runs = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        weights = resolve_weights(args, Path(tmp))
        t0 = time.perf_counter()
        seg = Segmenter(SegmenterConfig(weights=weights["path"], input_size=args.input_size or None, **asked))
        start_s = time.perf_counter() - t0
        seg.segment(frames[0])  # warm-up
        pipeline = seg.pipeline
        print(f"runtime: {describe(pipeline)} (start {start_s:.1f} s)", file=sys.stderr, flush=True)
        model = None
        if not args.no_reference:
            from bevanet_core.checkpoint import load_model

            model, _ = load_model(weights["path"])
        node_weights = None if weights["kind"] == "shipped CamVid" else weights["path"]
        nut = NodeUnderTest(node_weights, args, random.SystemRandom().randint(1, 200))
        try:
            msgs = [image_msg(nut.Image, f, args.encoding) for f in frames]
            nut.wait_ready(msgs[0])
            # interleaved, so that a shared machine's load drifts over all of them alike
            for run in range(args.runs):
                if model is not None:
                    reference_runs.append(reference_protocol(model, tuple(seg.input_size), "cpu", len(frames), 2))
                runtime_runs.append(runtime_pass(seg, frames))
                serial_runs.append(serial_pass(nut, msgs))
                flood_runs.append(flood_pass(nut, msgs, args.flood_hz, args.flood_s))
                ref = f"authors' {reference_runs[-1]['fps']:.2f} fps, " if reference_runs else ""
                print(
                    f"run {run + 1}/{args.runs}: {ref}"
                    f"runtime {runtime_runs[-1]['fps']:.2f} fps, "
                    f"node {serial_runs[-1]['latency_ms']['median']:.0f} ms, flood "
                    f"{flood_runs[-1]['fps']:.2f} fps",
                    file=sys.stderr,
                )
            node_pipeline = nut.pipeline
        finally:
            nut.close()
            seg.close()
    node = {"serial": serial_runs, "flood": flood_runs, "encoding": args.encoding, "pipeline": node_pipeline}
    h, w = frames[0].shape[:2]
    result = {
        "frames": {"folder": str(args.frames), "count": len(frames), "size": [w, h]},
        "weights": weights,
        "node_parameters": asked or "none (every parameter at its default)",
        "network_input": list(seg.input_size),
        "runs": args.runs,
        "runtime_pipeline": pipeline,
        "runtime_start_s": start_s,
        "machine": {**machine("cpu"), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "reference": reference_runs,
        "runtime": runtime_runs,
        "node": node,
    }
    ref_fps = med(reference_runs, "fps") if reference_runs else float("nan")
    rt_fps = med(runtime_runs, "fps")

    def row(name, runs, fps, dropped="-"):
        return (
            f"| {name} | {med(runs, 'latency_ms', 'median'):.1f} | {med(runs, 'latency_ms', 'p99'):.1f} | "
            f"{fps:.2f} | {fps / ref_fps:.2f}x | {fps / rt_fps:.0%} | {dropped} |"
        )

    table = [
        "| measurement | latency p50 (ms) | latency p99 (ms) | throughput (fps) | vs authors' | vs runtime | dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    if reference_runs:
        table.append(
            f"| authors' protocol (fp32 eager, random input) | {med(reference_runs, 'latency_ms', 'p50'):.1f} | "
            f"{med(reference_runs, 'latency_ms', 'p99'):.1f} | {ref_fps:.2f} | 1.00x | - | - |"
        )
    table += [
        row(f"bare runtime ({describe(pipeline)})", runtime_runs, rt_fps),
        row("node, one frame in flight", serial_runs, med(serial_runs, "fps")),
        row(
            f"node, flooded at {args.flood_hz:g} Hz (latest frame kept)",
            flood_runs,
            med(flood_runs, "fps"),
            f"{med(flood_runs, 'dropped'):.0f} of {med(flood_runs, 'sent'):.0f}",
        ),
    ]
    result["table"] = table
    print(
        f"{len(frames)} frames {w}x{h} from {args.frames}, network input "
        f"{seg.input_size[0]}x{seg.input_size[1]}, weights: {weights['kind']}, node parameters: "
        f"{result['node_parameters']}, median of {args.runs} runs, {result['machine']['cpu_simd']}, "
        f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"node pipeline (its /diagnostics): {describe(node_pipeline) if node_pipeline else 'not reported'}")
    print("\n".join(table))
    if args.json is not None:
        tmp_path = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp_path.write_text(json.dumps(result, indent=2))
        os.replace(tmp_path, args.json)
    return 0


def describe(pipeline: dict) -> str:
    return f"{pipeline['backend']} {pipeline['precision']}, {pipeline['threads']} thread(s)"


if __name__ == "__main__":
    sys.exit(main())
