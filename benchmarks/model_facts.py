"""Prints the model facts the README and the issue notes quote, measured on this machine:
parameter counts (training and inference mode) against the authors', MACs, BN-folding error and
ONNX Runtime parity, for BEVANet and BEVANet-S (randomised BN), and for the shipped trained model
on a real CamVid frame when it is installed.

    python benchmarks/model_facts.py [--json OUT] [--onnx-size 512x256]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from bevanet_core.checkpoint import DEFAULT_WEIGHTS, ModelInfo, load_model
from bevanet_core.deploy import count_conv_bn_pairs, fold_batchnorm, randomise_batchnorm
from bevanet_core.export.onnx import export_onnx
from bevanet_core.models import build_model
from bevanet_core.models.complexity import count_macs, count_parameters
from bevanet_core.models.published import BASELINE_COUNTS

AUTHORS = {  # ../shared/specs/bevanet.md (built from the authors' code)
    ("bevanet", 19): (58.824e6, 58.599e6),
    ("bevanet_s", 19): (15.186e6, 15.091e6),
    ("bevanet_s", 11): (15.184e6, 15.090e6),
    ("bevanet", 150): (58.858e6, 58.616e6),
}
PAPER_MACS = {("bevanet_s", (720, 960)): 19.9, ("bevanet_s", (1024, 2048)): 59.9, ("bevanet", (1024, 2048)): 237.2}


def baselines() -> None:
    import copy

    print("| network | classes | parameters | reference | GMACs | reference | at |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, (params, gmacs, size, classes) in BASELINE_COUNTS.items():
        model = build_model(name, classes).eval()
        with torch.device("meta"):  # shapes only: MACs at full size without the compute
            macs = count_macs(copy.deepcopy(model).to("meta"), size) / 1e9
        n = count_parameters(model)
        ref = "-" if gmacs is None else f"{gmacs:.2f}"
        print(f"| {name} | {classes} | {n:,} | {params}M | {macs:.2f} | {ref} | {size[1]}x{size[0]} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", dest="json_out")
    p.add_argument("--onnx-size", default="512x256", help="static ONNX input WxH for the parity check")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="only the other registered networks: parameters and MACs against baselines.md",
    )
    args = p.parse_args()
    if args.baselines:
        baselines()
        return
    w, h = (int(v) for v in args.onnx_size.split("x"))
    facts = {"parameters": [], "macs": [], "bn_folding": [], "onnx_parity": []}
    for (variant, classes), (train_ref, infer_ref) in AUTHORS.items():
        train = count_parameters(build_model(variant, classes, aux_heads=True))
        infer = count_parameters(build_model(variant, classes))
        facts["parameters"].append(
            dict(
                variant=variant,
                classes=classes,
                train=train,
                inference=infer,
                authors_train=train_ref,
                authors_inference=infer_ref,
                rel_diff_train=abs(train - train_ref) / train_ref,
                rel_diff_inference=abs(infer - infer_ref) / infer_ref,
            )
        )
    for name, ref in (("bevanet_cls", 57.391e6), ("bevanet_s_cls", 16.279e6)):
        n = count_parameters(build_model(name, 1000))
        facts["parameters"].append(
            dict(
                variant=name,
                classes=1000,
                train=n,
                inference=n,
                authors_train=ref,
                authors_inference=ref,
                rel_diff_train=abs(n - ref) / ref,
                rel_diff_inference=abs(n - ref) / ref,
            )
        )
    for (variant, size), paper in PAPER_MACS.items():
        macs = count_macs(build_model(variant, 19), size) / 1e9
        facts["macs"].append(
            dict(variant=variant, size_hw=list(size), gmacs=macs, paper=paper, rel_diff=abs(macs - paper) / paper)
        )
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    for variant in ("bevanet", "bevanet_s"):
        torch.manual_seed(0)
        model = build_model(variant, 19).eval()
        randomise_batchnorm(model)
        with torch.no_grad():
            ref = model(x)
            folded = fold_batchnorm(model)
            out = folded(x)
        facts["bn_folding"].append(
            dict(
                variant=variant,
                max_rel_err=float((out - ref).abs().max() / ref.abs().max()),
                pairs_left=count_conv_bn_pairs(folded),
            )
        )
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{variant}.onnx"
            export_onnx(model, ModelInfo.default(variant, 19), path, input_size=(w, h))
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            onnx_out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        facts["onnx_parity"].append(
            dict(
                variant=variant,
                size_wh=[w, h],
                opset=17,
                max_abs_diff=float(np.abs(onnx_out - ref.numpy()).max()),
                logit_range=float(ref.abs().max()),
            )
        )
    if DEFAULT_WEIGHTS.is_file():  # the shipped, trained model: realistic logit magnitudes
        import cv2
        import onnxruntime as ort

        from bevanet_core.data.transforms import normalize

        model, info = load_model()
        sw, sh = info.input_size
        frame = sorted((Path(__file__).resolve().parents[2] / "shared/data/camvid/val").glob("*.png"))
        image = cv2.cvtColor(cv2.imread(str(frame[0])), cv2.COLOR_BGR2RGB) if frame else None
        xs = (
            normalize(cv2.resize(image, (sw, sh)), info.mean, info.std)[None]
            if image is not None
            else torch.randn(1, 3, sh, sw)
        )
        with torch.no_grad():
            ref = model(xs)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "shipped.onnx"
            export_onnx(model, info, path)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            onnx_out = sess.run(None, {sess.get_inputs()[0].name: xs.numpy()})[0]
        facts["onnx_parity"].append(
            dict(
                variant="shipped " + info.variant,
                size_wh=[sw, sh],
                opset=17,
                max_abs_diff=float(np.abs(onnx_out - ref.numpy()).max()),
                logit_range=float(ref.abs().max()),
                label_agreement=float((onnx_out.argmax(1) == ref.numpy().argmax(1)).mean()),
            )
        )
    print(f"{'variant':<10}{'cls':>4}{'train params':>14}{'authors':>12}{'infer params':>14}{'authors':>12}")
    for r in facts["parameters"]:
        print(
            f"{r['variant']:<10}{r['classes']:>4}{r['train']:>14,}{r['authors_train'] / 1e6:>11.3f}M"
            f"{r['inference']:>14,}{r['authors_inference'] / 1e6:>11.3f}M"
        )
    for r in facts["macs"]:
        print(f"MACs {r['variant']} {r['size_hw'][0]}x{r['size_hw'][1]}: {r['gmacs']:.2f} G (paper {r['paper']} G)")
    for r in facts["bn_folding"]:
        print(f"BN folding {r['variant']}: max rel err {r['max_rel_err']:.2e}, conv->BN pairs left {r['pairs_left']}")
    for r in facts["onnx_parity"]:
        print(
            f"ONNX Runtime parity {r['variant']} {r['size_wh'][0]}x{r['size_wh'][1]} opset 17: max abs logit "
            f"diff {r['max_abs_diff']:.2e} (logits up to {r['logit_range']:.1f})"
            + (f", argmax agreement {r['label_agreement']:.6f}" if "label_agreement" in r else "")
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
