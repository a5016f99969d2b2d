#!/usr/bin/env python3
"""The GPU check: speed of every GPU path next to the authors' protocol, and fp16/bf16 mIoU.

    bash scripts/gpu_check.sh --prepare          # here: JPEG-95 copy of CamVid val -> .gpu_check/
    bash scripts/gpu_check.sh --out DIR          # on the GPU machine (under 8 minutes on an H200)
    bash scripts/gpu_check.sh --quick --out DIR  # anywhere, CPU included: small sizes, few runs

Measured side by side in one run, batch 1, host frame in -> host mask out at the frame's
resolution (`bevanet_core.runtime.benchmark.run_benchmark`), for BEVANet and BEVANet-S at
2048x1024 and 960x720:
- the authors' protocol (fp32 eager, BN not folded, random input on the device, no upsampling);
- ours: fp32, fp16 and bf16 with folded BatchNorm, channels_last and CUDA graphs; fp16 with
  torch.compile; and at BEVANet-S 2048x1024 the fp16 path with each of CUDA graphs,
  channels_last and BN folding switched off, to show what each is worth;
- the shipped model's CamVid val mIoU in fp32, fp16 and bf16 (and pixel agreement with fp32).
Writes gpu_check.json and gpu_check.md into --out, after every row, so that a run cut short
still leaves what it measured. Needs only torch, numpy, opencv, pillow, safetensors and pyyaml
(no install of this package: the script puts the repository on sys.path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

FULL_SIZES = ((2048, 1024), (960, 720))
QUICK_SIZES = ((256, 128),)
VARIANTS = ("bevanet", "bevanet_s")


def prepare(source: Path, dest: Path) -> None:
    """JPEG-95 copy of CamVid val (labels kept as PNG) with its own val.lst: ~10 MB."""
    import cv2

    from bevanet_core.data.datasets import read_pair_list

    pairs = read_pair_list(source, source / "val.lst")
    (dest / "val").mkdir(parents=True, exist_ok=True)
    (dest / "valannot").mkdir(parents=True, exist_ok=True)
    lines = []
    for image, label in pairs:
        jpg = Path("val") / (image.stem + ".jpg")
        png = Path("valannot") / label.name
        cv2.imwrite(str(dest / jpg), cv2.imread(str(image)), [cv2.IMWRITE_JPEG_QUALITY, 95])
        (dest / png).write_bytes(label.read_bytes())
        lines.append(f"{jpg} {png}")
    (dest / "val.lst").write_text("\n".join(lines) + "\n")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"wrote {len(lines)} frames to {dest} ({size / 1e6:.1f} MB)")


def speed_rows(device: str, quick: bool):
    """(label, BenchConfig fields) of every speed row, in the order they run."""
    cuda = device.startswith("cuda")
    sizes = QUICK_SIZES if quick else FULL_SIZES
    precisions = ("fp32", "fp16", "bf16") if cuda else ("fp32", "bf16")
    rows = []
    for variant in VARIANTS:
        for size in sizes:
            base = {"variant": variant, "size": size}
            for i, p in enumerate(precisions):
                rows.append((f"{variant} {size[0]}x{size[1]} {p}", {**base, "precision": p,
                             "reference": i == 0}))  # fmt: skip
            if cuda and size == sizes[0]:
                rows.append(
                    (f"{variant} {size[0]}x{size[1]} fp16 + torch.compile",
                     {**base, "precision": "fp16", "compile": True, "reference": False})
                )  # fmt: skip
    if cuda:
        size = sizes[0]
        for what, field in (
            ("no CUDA graphs", "cuda_graphs"),
            ("no channels_last", "channels_last"),
            ("BN not folded", "fold_bn"),
        ):
            rows.append(
                (f"bevanet_s {size[0]}x{size[1]} fp16, {what}",
                 {"variant": "bevanet_s", "size": size, "precision": "fp16", field: False,
                  "reference": False})
            )  # fmt: skip
    return rows


def miou_rows(args, device: str):
    """Shipped model on the CamVid val copy: mIoU per precision, agreement with fp32."""
    import cv2

    from bevanet_core.data.classes import CAMVID_VOID
    from bevanet_core.data.datasets import read_image, read_pair_list
    from bevanet_core.evaluation.metrics import ConfusionMatrix
    from bevanet_core.runtime import Segmenter

    root = Path(args.data)
    pairs = read_pair_list(root, root / "val.lst")
    if args.quick:
        pairs = pairs[:: max(1, len(pairs) // 4)][:4]
    precisions = ("fp32", "fp16", "bf16") if device.startswith("cuda") else ("fp32", "bf16")
    segs = {p: Segmenter(backend="torch", device=device, precision=p) for p in precisions}
    cms = {p: ConfusionMatrix(segs[p].info.num_classes) for p in precisions}
    agree = {p: 0 for p in precisions}
    total = 0
    for image, label_path in pairs:
        rgb = read_image(image)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED).astype(np.uint8)
        label[label == CAMVID_VOID] = 255
        masks = {p: s.segment(rgb).mask for p, s in segs.items()}
        for p in precisions:
            cms[p].update(masks[p], label)
            agree[p] += int((masks[p] == masks["fp32"]).sum())
        total += label.size
    return {
        p: {
            "miou": cms[p].miou(),
            "per_class_iou": cms[p].as_dict(segs[p].info.class_names)["per_class_iou"],
            "agreement_with_fp32": agree[p] / total,
            "frames": len(pairs),
        }
        for p in precisions
    }


def markdown(report) -> str:
    env = report["environment"]
    lines = [
        f"# GPU check ({'quick' if report['quick'] else 'full'})",
        "",
        f"Device: {env.get('gpu', 'cpu')}; CPU {env['cpu']}; torch {env['torch']}; "
        f"{report['elapsed_s']:.0f} s. Batch 1, host frame -> host mask at the frame's size.",
        "",
        "| path | p50 ms | p99 ms | FPS | x authors | pre / infer / post ms |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["speed"]:
        if "error" in row:
            lines.append(f"| {row['label']} | failed: {row['error']} | | | | |")
            continue
        if "reference" in row:
            ref = row["reference"]
            lines.append(
                f"| {row['variant']} {row['size'][0]}x{row['size'][1]} authors' protocol | "
                f"{ref['latency_ms']['p50']:.2f} | {ref['latency_ms']['p99']:.2f} | "
                f"{ref['fps']:.1f} | 1.00 | - |"
            )
        st = row["stages_ms_p50"]
        lines.append(
            f"| {row['label']} | {row['latency_ms']['p50']:.2f} | {row['latency_ms']['p99']:.2f} "
            f"| {row['fps']:.1f} | {row.get('speedup_vs_reference', float('nan')):.2f} | "
            f"{st['preprocess']:.2f} / {st['inference']:.2f} / {st['postprocess']:.2f} |"
        )
    if report.get("miou"):
        lines += ["", "| precision | CamVid val mIoU | agreement with fp32 | frames |"]
        lines += ["| --- | ---: | ---: | ---: |"]
        for p, m in report["miou"].items():
            agree = 100 * m["agreement_with_fp32"]
            lines.append(f"| {p} | {m['miou']:.2f} | {agree:.2f}% | {m['frames']} |")
    return "\n".join(lines) + "\n"


def write(report, out: Path) -> None:
    report["elapsed_s"] = time.perf_counter() - report.pop("_t0", time.perf_counter())
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few runs (CPU test)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--out", default="outputs/gpu_check")
    p.add_argument(
        "--data",
        default=None,
        help="CamVid val (val.lst layout); default .gpu_data/camvid (scripts/pack_camvid.py) "
        "when present, else .gpu_check/camvid (--prepare)",
    )
    p.add_argument("--runs", type=int, default=None, help="timed runs per row (50; quick: 2)")
    p.add_argument("--prepare", action="store_true", help="write the JPEG-95 val copy and stop")
    p.add_argument("--source", default=str(REPO.parent / "shared" / "data" / "camvid"))
    args = p.parse_args(argv)
    own = REPO / ".gpu_check" / "camvid"
    if args.prepare:
        prepare(Path(args.source), Path(args.data or own))
        return 0
    if args.data is None:
        packed = REPO / ".gpu_data" / "camvid"
        args.data = str(packed if (packed / "val.lst").is_file() else own)
    from bevanet_core.hardware import machine
    from bevanet_core.runtime.benchmark import BenchConfig, run_benchmark

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not Path(args.data, "val.lst").is_file():
        print(f"gpu_check: no CamVid val at {args.data}: run --prepare first", file=sys.stderr)
        return 2
    runs = args.runs or (2 if args.quick else 50)
    warmup = 1 if args.quick else 10
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"quick": args.quick, "device": device, "environment": machine(device),
              "speed": [], "miou": {}, "_t0": time.perf_counter()}  # fmt: skip
    reference = {}
    for label, fields in speed_rows(device, args.quick):
        t0 = time.perf_counter()
        try:
            cfg = BenchConfig(device=device, runs=runs, warmup=warmup, **fields)
            row = run_benchmark(cfg)
        except Exception as exc:  # noqa: BLE001 - one failed path must not lose the others
            row = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        row["label"] = label
        key = (fields["variant"], tuple(fields["size"]))
        if "reference" in row:
            reference[key] = row["reference"]["fps"]
        if "fps" in row and key in reference:
            row["speedup_vs_reference"] = row["fps"] / reference[key]
        report["speed"].append(row)
        took = time.perf_counter() - t0
        print(f"{label}: {row.get('fps', 0):.1f} fps ({took:.0f} s)", flush=True)
        write({**report, "_t0": report["_t0"]}, out)
    report["miou"] = miou_rows(args, device)
    for prec, m in report["miou"].items():
        print(f"mIoU {prec}: {m['miou']:.2f} (agreement with fp32 {m['agreement_with_fp32']:.4f})")
    write(report, out)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
