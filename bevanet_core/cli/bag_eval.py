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
    BagEvalError,
    BagResult,
    EvalOptions,
    FrameProcessor,
    RuntimeProcessor,
    build_report,
    evaluate_bags,
)
from ..bags.writer import BagWriteError
from .bag_eval_args import build_parser, check_args
from .common import (
    apply_input_policy,
    build_segmenter,
    extras_guard,
    foxglove_callback,
    start_foxglove,
)

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


def dataset_labels(args: argparse.Namespace):
    """label_source(k) over a dataset list, labels mapped as bevanet-eval maps them."""
    from ..data.datasets import build_dataset

    data = build_dataset(args.dataset, args.root, args.list)

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
        path = report.write_montage(samples, processor.colorize, args.montage, processor.class_names)
        if path is not None:
            written["montage"] = str(path)
    return written


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
    if args.root is not None:
        try:
            label_source, _ = dataset_labels(args)
        except (ValueError, OSError) as err:
            print(f"bevanet-bag-eval: cannot read the dataset labels: {err}", file=sys.stderr)
            return 1
    video = None
    if args.overlay_video is not None:
        try:
            video = report.VideoSink(
                args.overlay_video, legend=report.Legend.of(processor.class_names, processor.colorize)
            )
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
        out_storage=args.storage,
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
