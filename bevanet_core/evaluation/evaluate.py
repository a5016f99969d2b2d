"""Dataset evaluation through the same runtime the node uses (single scale, full image)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from ..paths import OutputWriteError, unique_output_names, write_image
from .metrics import ConfusionMatrix, latency_summary


def evaluate_segmenter(
    segmenter,
    dataset,
    limit: Optional[int] = None,
    save_dir: Optional[Path] = None,
    to_label_ids=None,
    progress: bool = False,
    calibration: bool = True,
) -> dict:
    """Runs `segmenter` over `dataset` (items: RGB uint8 image, label uint8 with 255 ignored).

    Returns a report with mIoU (percent), per-class IoU, pixel accuracy, latency percentiles and
    throughput. `save_dir` keeps every prediction as a PNG (through `to_label_ids`, e.g. the
    Cityscapes trainId -> labelId mapping for the official test server). `calibration`: also
    the ECE and error AUROC of the confidence before (T = 1) and after the weights' temperature
    (`evaluation.calibration`), as `ece` and `error_auroc`. Saved predictions are named after
    as much of the image path as keeps them apart (`paths.unique_output_names`; ValueError before
    the first frame when none does); a write that fails ends the evaluation there, and the report
    of the frames done so far carries it as `write_error` (the file named).
    """
    names = list(segmenter.info.class_names)
    cm = ConfusionMatrix(len(names))
    latencies: list[float] = []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if save_dir is not None:
        out_names = unique_output_names(pair[0] for pair in dataset.pairs[:n])
        save_dir.mkdir(parents=True, exist_ok=True)
    write_error = None
    meter = None
    if calibration:
        from .calibration import CalibrationMeter

        temperature = float(getattr(segmenter, "temperature", 1.0))
        curve = getattr(segmenter, "confidence_curve", None)
        meter = CalibrationMeter(
            len(names), {"before": 1.0, "after": temperature}, sample_per_frame=0, curves={"after": curve}
        )
    start = time.perf_counter()
    for i in range(n):
        image, label = dataset[i]
        t0 = time.perf_counter()
        result = segmenter.segment(image, "rgb8", logits=meter is not None)
        latencies.append((time.perf_counter() - t0) * 1e3)
        mask = result.mask
        cm.update(mask, label)
        if meter is not None:
            meter.update(segmenter.frame_logits(result.logits, image.shape[1], image.shape[0]), label)
        if save_dir is not None:
            try:
                write_image(save_dir / f"{out_names[i]}.png", to_label_ids(mask) if to_label_ids is not None else mask)
            except OutputWriteError as exc:  # the frames so far are still reported
                write_error, n = str(exc), i + 1
                break
        if progress and (i + 1) % 10 == 0:
            print(f"  {i + 1}/{n} images, running mIoU {cm.miou():.2f}", flush=True)
    elapsed = time.perf_counter() - start
    report = cm.as_dict(names)
    if write_error is not None:
        report["write_error"] = write_error
    report.update(
        {
            "images": n,
            "latency_ms": latency_summary(latencies),
            "fps": n / elapsed if elapsed else 0.0,
            "confusion_matrix": cm.matrix.tolist(),
        }
    )
    if meter is not None:
        from .calibration import calibration_of

        cal = meter.report()
        report.update(
            {
                "ece": cal["ece"],
                "error_auroc": cal["error_auroc"],
                "nll": cal["nll"],
                "mean_confidence": cal["mean_confidence"],
                "temperature": cal["temperature"]["after"],
                "calibration": calibration_of(segmenter.info),
            }
        )
    return report


def format_report(report: dict) -> str:
    """A fixed-width per-class IoU table with the summary lines."""
    lines = [f"{'class':<16}{'IoU %':>8}", "-" * 24]
    for name, iou in report["per_class_iou"].items():
        lines.append(f"{name:<16}{('   n/a' if iou is None else f'{iou:8.2f}')}")
    lines += [
        "-" * 24,
        f"{'mIoU':<16}{report['miou']:8.2f}",
        f"{'pixel acc.':<16}{report['pixel_accuracy']:8.2f}",
    ]
    if "ece" in report:
        from .calibration import format_calibration

        lines.append(
            format_calibration(
                {k: report[k] for k in ("ece", "error_auroc")}
                | {"temperature": {"before": 1.0, "after": report["temperature"]}}
            )
        )
        cal = report.get("calibration") or {}
        lines.append(
            f"temperature fitted on {cal['fitted_on']}"
            if cal.get("fitted_on")
            else "no fitted temperature in the weights"
        )
    lines += [
        f"images {report['images']}, latency p50 "
        + (f"{report['latency_ms']['p50']:.1f} ms, " if report["latency_ms"] else "n/a, ")
        + f"{report['fps']:.2f} images/s",
    ]
    return "\n".join(lines)


def write_json(report: dict, path: Path) -> None:
    from ..paths import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
