"""bevanet-bag-eval: replay bags through the node's runtime; mIoU, latency, report, output bag.

    bevanet-bag-eval drive_bag --weights model.safetensors --json r.json --markdown r.md
    bevanet-bag-eval a_bag b_bag c_bag --out-bag outputs/segmented      # one output bag per input
    torchrun --nproc-per-node 4 -m bevanet_core.cli.bag_eval bags/*      # shard bags over 4 ranks

Exit status: 0 when every bag was read completely, 1 when a bag had errors (the report is still
written and keeps every frame evaluated before the fault), 2 on bad arguments.

`--through-node` needs a DDS client, which the ROS package supplies: the `bevanet-bag-eval`
console script (`bevanet_ros.tools`) passes it to `main` as `node_client`.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..bags import report
from ..bags.distributed import (
    all_reduce_confusion,
    context_from_env,
    finish,
    gather_objects,
    merge_confusions,
    shard,
    unshard,
)
from ..bags.evaluate import (
    DEFAULT_LABEL_TOPIC,
    OUTPUT_TOPICS,
    BagEvalError,
    BagResult,
    EvalOptions,
    FrameProcessor,
    RuntimeProcessor,
    build_report,
    evaluate_bags,
)
from ..bags.writer import BagWriteError
from ..paths import overlap
from .common import (
    DefaultsFormatter,
    add_foxglove_args,
    add_model_args,
    apply_input_policy,
    build_segmenter,
    extras_guard,
    foxglove_callback,
    start_foxglove,
)
from .validate import check_output_file, float_range, int_range, topic_name

# (command-line arguments, the in-process processor) -> a processor that drives a running node
NodeClientFactory = Callable[[argparse.Namespace, FrameProcessor], FrameProcessor]


def build_processor(args: argparse.Namespace, prog: str, node_client: NodeClientFactory | None = None):
    """(segmenter, frame processor) from the command line: the node's runtime, or with
    --through-node a running node over DDS through `node_client`. None, after saying why, when
    neither can be had."""
    try:
        seg = build_segmenter(args)
    except (ValueError, OSError, ImportError) as err:
        print(f"{prog}: cannot load the model: {err}", file=sys.stderr)
        return None
    processor: FrameProcessor = RuntimeProcessor(seg)
    if not args.through_node:
        return seg, processor
    if node_client is None:
        print(
            f"{prog}: --through-node needs the ROS 2 client of bevanet_ros; run the "
            f"{prog} console script that the package installs",
            file=sys.stderr,
        )
        return None
    try:
        return seg, node_client(args, processor)
    except (ImportError, TimeoutError, ChildProcessError) as err:  # ChildProcessError: a spawned node died
        print(f"{prog}: {err}", file=sys.stderr)
    return None


def model_meta(seg: Any, args: argparse.Namespace, processor: Any = None) -> dict[str, Any]:
    """The model and the pipeline that segmented the frames: the in-process runtime's, or with
    --through-node the one the node reports on /diagnostics (its own backend, precision,
    weights and threads, which this process does not choose)."""
    info = seg.info
    if getattr(args, "through_node", False):
        pipeline = getattr(processor, "pipeline", None) or {
            "backend": "unknown: the node published no diagnostics during the run"
        }
        source = "the node's /diagnostics"
    else:
        pipeline, source = seg.pipeline, "this process"
    return {
        "variant": pipeline.get("variant", info.variant),
        "num_classes": info.num_classes,
        "dataset": info.dataset,
        **{k: pipeline.get(k) for k in ("weights", "model_file", "backend", "precision", "device", "threads")},
        "resize": args.resize,
        "input_size": pipeline.get("input_size") or "x".join(str(v) for v in seg.input_size),
        "pipeline_from": source,
    }


def machine_meta() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def add_node_topic_args(p, prefix: str = "") -> None:
    """The topics and timeout of a frame's round trip through a running node (bag-eval, demo)."""
    p.add_argument(
        "--node-input",
        type=topic_name,
        default="/camera/image_raw",
        help=f"{prefix}topic the node subscribes (remap its `image` to it)",
    )
    p.add_argument("--node-mask", type=topic_name, default="/segmentation/mask", help=f"{prefix}the node's mask topic")
    p.add_argument(
        "--node-timeout",
        type=float_range(0.0, 3600.0, lo_open=True),
        default=5.0,
        help=f"{prefix}seconds to wait for each mask before counting the frame dropped",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bevanet-bag-eval",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsFormatter,
    )
    p.add_argument(
        "bags",
        nargs="+",
        type=Path,
        help="rosbag2 folders / .mcap / .db3 files, or ROS 1 .bag files",
    )
    p.add_argument(
        "--image-topic",
        type=topic_name,
        default=None,
        help="camera topic (default: the bag's only image topic)",
    )
    p.add_argument(
        "--label-topic",
        type=label_topic_name,
        default=DEFAULT_LABEL_TOPIC,
        help="mono8 ground-truth topic paired by header stamp; 'none' to skip accuracy",
    )
    p.add_argument("--require-labels", action="store_true", help="fail a bag that has no label topic")
    p.add_argument(
        "--stamp-tolerance-ms",
        type=float_range(0.0, 1e6),
        default=0.0,
        help="pair labels with frames whose stamps differ by at most this much",
    )
    p.add_argument(
        "--dataset-root",
        type=Path,
        default=None,
        help="labels from a dataset folder instead of a topic (k-th frame <-> k-th list entry)",
    )
    p.add_argument(
        "--list",
        type=Path,
        default=None,
        help="list file of --dataset-root (image label per line)",
    )
    p.add_argument(
        "--dataset",
        default="camvid",
        choices=("camvid", "cityscapes"),
        help="label mapping of --dataset-root",
    )
    p.add_argument(
        "--max-frames",
        type=int_range(1),
        default=None,
        help="stop each bag after this many frames",
    )
    p.add_argument("--warmup", type=int_range(0), default=1, help="first frames left out of the latency statistics")
    add_model_args(p)
    add_foxglove_args(p)
    n = p.add_argument_group("deployed node (needs rclpy)")
    n.add_argument(
        "--through-node",
        action="store_true",
        help="send frames over DDS to a running segmentation node, not the in-process runtime",
    )
    add_node_topic_args(n)
    o = p.add_argument_group("outputs")
    o.add_argument("--json", type=Path, default=None, help="JSON report")
    o.add_argument("--markdown", type=Path, default=None, help="markdown summary")
    o.add_argument("--plot", type=Path, default=None, help="PNG: latency trace and per-class IoU")
    o.add_argument("--montage", type=Path, default=None, help="PNG: camera | overlay | ground truth rows")
    o.add_argument("--video", type=Path, default=None, help="mp4 of the overlays (single process only)")
    o.add_argument(
        "--out-bag",
        type=Path,
        default=None,
        help="output bag (one input) or folder of output bags (several inputs): inputs plus "
        f"{', '.join(OUTPUT_TOPICS)} at the original stamps",
    )
    o.add_argument("--out-format", default="mcap", choices=("mcap", "sqlite3"))
    o.add_argument(
        "--no-copy-inputs",
        action="store_true",
        help="output bags hold only the segmentation topics",
    )
    o.add_argument("--overwrite", action="store_true", help="replace existing output bags")
    return p


def label_topic_name(text: str) -> str:
    """A topic name, or 'none' (or '') for no labels."""
    return text if text.lower() in ("", "none") else topic_name(text)


def output_bags(bags: Sequence[Path], out: Path | None) -> list[Path | None]:
    """Output path per input bag: `out` for one bag, out/<name>_segmented for several."""
    if out is None:
        return [None] * len(bags)
    if len(bags) == 1:
        return [out]
    names = [Path(b).stem if Path(b).suffix in (".bag", ".mcap", ".db3") else Path(b).name for b in bags]
    if len(set(names)) != len(names):
        raise ValueError("several input bags share a name; evaluate them in separate runs or rename them")
    out.mkdir(parents=True, exist_ok=True)
    return [out / f"{n}_segmented" for n in names]


def dataset_labels(args: argparse.Namespace):
    """label_source(k) over a dataset list, labels mapped as bevanet-eval maps them."""
    from ..data.datasets import build_dataset

    data = build_dataset(args.dataset, args.dataset_root, args.list)

    def label(k: int):
        if k >= len(data):
            return None
        return data.load(k)[1]

    return label, len(data)


def write_outputs(
    summary: dict,
    results: Sequence[BagResult],
    processor: Any,
    args: argparse.Namespace,
    printer=print,
) -> dict[str, str]:
    """Write the JSON / markdown / plot / montage files asked for; returns what was written."""
    written: dict[str, str] = {}
    if args.json:
        written["json"] = str(report.write_json(summary, args.json))
    if args.markdown:
        written["markdown"] = str(report.write_markdown(summary, args.markdown))
    if args.plot:
        try:
            written["plot"] = str(report.write_plot(summary, [v for r in results for v in r.latencies_ms], args.plot))
        except ImportError as err:
            printer(f"warning: no plot ({err}); install matplotlib")
    if args.montage:
        samples = [s for r in results for s in r.samples]
        path = report.write_montage(samples, processor.colorize, args.montage)
        if path is not None:
            written["montage"] = str(path)
    return written


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, world_size: int):
    """Refuses option combinations that cannot work (exits 2 with the parser's message);
    returns the output bag of every input bag."""
    if (args.dataset_root is None) != (args.list is None):
        parser.error("--dataset-root and --list go together")
    if args.dataset_root is not None and len(args.bags) != 1:
        parser.error("labels from --dataset-root/--list pair by frame order, so give exactly one bag")
    missing = [str(b) for b in args.bags if not Path(b).exists()]
    if missing:
        parser.error(f"bag(s) not found: {', '.join(missing)}")
    if args.video is not None and world_size > 1:
        parser.error("--video needs a single process (it is one stream); drop it under torchrun")
    if args.through_node and world_size > 1:
        parser.error("--through-node drives one node from one process; drop it under torchrun")
    if args.out_bag is not None:
        why = overlap(args.out_bag, args.bags)
        if why:
            parser.error(f"--out-bag {args.out_bag} would destroy an input bag: {why}")
        if len(args.bags) > 1 and args.out_bag.exists() and not args.out_bag.is_dir():
            parser.error(f"--out-bag {args.out_bag}: several bags need a folder, this is a file")
    try:
        outs = output_bags(args.bags, args.out_bag)
    except ValueError as err:
        parser.error(str(err))
    for out in outs:
        why = overlap(out, args.bags) if out is not None else None
        if why:
            parser.error(f"--out-bag {out} would destroy an input bag: {why}")
    for option, path in (
        ("--json", args.json),
        ("--markdown", args.markdown),
        ("--plot", args.plot),
        ("--montage", args.montage),
        ("--video", args.video),
    ):
        check_output_file(parser, option, path, args.bags)
    return outs


@extras_guard("bevanet-bag-eval")
def main(argv: Sequence[str] | None = None, node_client: NodeClientFactory | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = context_from_env()
    apply_input_policy(args)  # $BEVANET_MAX_PIXELS checked now, not at every frame
    outs = check_args(parser, args, ctx.world_size)
    label_topic = None if str(args.label_topic).lower() in ("", "none") else args.label_topic
    built = build_processor(args, "bevanet-bag-eval", node_client)
    if built is None:
        return 1
    seg, processor = built
    label_source = None
    if args.dataset_root is not None:
        try:
            label_source, _ = dataset_labels(args)
        except (ValueError, OSError) as err:
            print(f"bevanet-bag-eval: cannot read the dataset labels: {err}", file=sys.stderr)
            return 1
    video = None
    if args.video is not None:
        try:
            video = report.VideoSink(args.video)
        except ValueError as err:
            parser.error(str(err))
    view = start_foxglove(args, "bevanet-bag-eval")
    live = foxglove_callback(view, processor.colorize) if view is not None else None

    def on_frame(rec) -> None:
        if video is not None:
            video.write(rec.overlay, rec.stamp)
        if live is not None:
            live(rec)

    options = EvalOptions(
        image_topic=args.image_topic,
        label_topic=label_topic,
        require_labels=args.require_labels,
        stamp_tolerance_ms=args.stamp_tolerance_ms,
        max_frames=args.max_frames,
        warmup=args.warmup,
        out_storage=args.out_format,
        overwrite=args.overwrite,
        copy_inputs=not args.no_copy_inputs,
        frame_callback=on_frame if video is not None or live is not None else None,
    )
    indices = shard(list(range(len(args.bags))), ctx.rank, ctx.world_size)
    try:
        local = evaluate_bags(
            [args.bags[i] for i in indices],
            processor,
            options,
            [outs[i] for i in indices],
            label_source,
            functools.partial(print_progress, ctx.rank),
        )
    except (BagEvalError, BagWriteError) as err:
        if video is not None:
            video.abort()
        print(f"bevanet-bag-eval: {err}", file=sys.stderr)
        finish(ctx)
        return 2
    except BaseException:
        if video is not None:
            video.abort()
        raise
    finally:
        if hasattr(processor, "shutdown"):
            processor.shutdown()
        if view is not None:
            view.close()
    video_path = video.close() if video is not None else None
    code = report_results(args, ctx, seg, processor, local, label_topic, label_source, video_path)
    finish(ctx)
    return code


def print_progress(rank: int, r: BagResult) -> None:
    miou = f"{r.confusion.miou():.2f}" if r.confusion is not None and r.labelled else "n/a"
    print(
        f"[rank {rank}] {r.bag}: {r.frames} frames, {r.labelled} labelled, mIoU {miou}, {len(r.errors)} error(s)",
        flush=True,
    )


def report_results(args, ctx, seg, processor, local, label_topic, label_source, video_path) -> int:
    """Merges the ranks' results; rank 0 writes and prints the report. Returns the exit code."""
    num_classes = processor.num_classes
    merged = all_reduce_confusion(merge_confusions([r.confusion for r in local], num_classes), num_classes, ctx)
    for r in local:  # arrays for the montage stay on rank 0 only; the rest travels light
        if not ctx.is_main:
            r.samples = []
    results = unshard(gather_objects(local, ctx), ctx.world_size)
    code = 1 if any(r.errors for r in results) else 0
    if not ctx.is_main:
        return code
    meta = {
        "model": model_meta(seg, args, processor),
        "machine": machine_meta(),
        "world_size": ctx.world_size,
        "mode": "dds-node" if args.through_node else "in-process runtime",
        "image_topic": args.image_topic,
        "label_topic": label_topic if label_source is None else None,
        "labels_from": str(args.list) if label_source is not None else label_topic,
    }
    summary = build_report(results, processor.class_names, merged, meta)
    written = write_outputs(summary, results, processor, args)
    if video_path is not None:
        written["video"] = str(video_path)
    for r in results:
        if r.out_bag:
            written.setdefault("out_bags", []).append(r.out_bag)  # type: ignore[union-attr]
    print(summary_line(summary))
    for kind, path in written.items():
        print(f"  {kind}: {path}")
    for e in summary["errors"]:
        print(
            f"  error ({Path(e['bag']).name}, after {e['frames_before']} frames): {e['error']}",
            file=sys.stderr,
        )
    return code


def summary_line(report: dict) -> str:
    lat = report.get("latency_ms") or {}
    miou = "n/a (no labels)" if report.get("miou") is None else f"{report['miou']:.2f} %"
    p50 = f"{lat['p50']:.1f}" if lat else "n/a"
    p99 = f"{lat['p99']:.1f}" if lat else "n/a"
    fps = f"{report['fps']:.1f}" if report.get("fps") else "n/a"
    model = report.get("model") or {}
    pipeline = (
        f"; {model.get('backend')} {model.get('precision')}, {model.get('threads')} thread(s) "
        f"(as {model.get('pipeline_from')} reports)"
        if model
        else ""
    )
    return (
        f"mIoU {miou} over {report['labelled_frames']} labelled of {report['frames']} frames "
        f"({report['unpaired']} unpaired); latency p50 {p50} ms, p99 {p99} ms; {fps} fps{pipeline}"
    )


if __name__ == "__main__":
    sys.exit(main())
