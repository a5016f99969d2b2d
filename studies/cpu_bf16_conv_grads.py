"""Checks the CPU's bf16 convolution gradients against float32 arithmetic on the same data.

For the depthwise convs that BEVANet and VAN use (plain and dilated, square and 1-D), at several
map sizes, in NCHW and channels-last layout: the output, input gradient and weight gradient of
`F.conv2d` on bf16 tensors against `conv2d` / `conv2d_weight` in float32 on the same bf16 values.
Relative error = max |bf16 - fp32| / max |fp32|; bf16 rounding gives about 0.2-0.5%.

With torch 2.13 (CPU build, oneDNN) the weight gradient of a dilated depthwise conv is wrong for
channels-last inputs from some size up (100-160%, no error raised), which is why
`layers.channel_layer_norm` returns NCHW tensors and the engine refuses CPU bf16 channels_last
for such networks. Rerun this after a torch upgrade:

    python studies/cpu_bf16_conv_grads.py [--sizes 16 30 64 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

# name -> (kernel, padding, dilation) of depthwise convs in the registered networks
CONVS = {
    "dw 3x3": ((3, 3), (1, 1), (1, 1)),
    "dw 5x5": ((5, 5), (2, 2), (1, 1)),
    "dw 3x3 dilation 2": ((3, 3), (2, 2), (2, 2)),
    "dw 7x7 dilation 3 (VAN LKA)": ((7, 7), (9, 9), (3, 3)),
    "dw 1x11 dilation (1,3) (BEVANet)": ((1, 11), (0, 15), (1, 3)),
    "dw 11x1 dilation (3,1) (BEVANet)": ((11, 1), (15, 0), (3, 1)),
}


def relative_errors(
    kernel, padding, dilation, size: int, channels_last: bool, channels: int = 64, batch: int = 4, seed: int = 0
) -> dict:
    """Relative error of the bf16 output, input gradient and weight gradient."""
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, channels, size, size, generator=gen).to(torch.bfloat16)
    grad = torch.randn(batch, channels, size, size, generator=gen).to(torch.bfloat16)
    x, grad = x.contiguous(memory_format=fmt), grad.contiguous(memory_format=fmt)
    w = torch.randn(channels, 1, *kernel, generator=gen).to(torch.bfloat16)

    xb, wb = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    out = F.conv2d(xb, wb, None, 1, padding, dilation, channels)
    out.backward(grad)
    xf, wf = x.float().requires_grad_(True), w.float().requires_grad_(True)
    ref = F.conv2d(xf, wf, None, 1, padding, dilation, channels)
    ref.backward(grad.float())

    def rel(a, b):
        return float((a.detach().float() - b).abs().max() / b.abs().max())

    return {"output": rel(out, ref.detach()), "input_grad": rel(xb.grad, xf.grad), "weight_grad": rel(wb.grad, wf.grad)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 30, 64, 128])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the errors here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, oneDNN {torch.backends.mkldnn.is_available()}; relative error "
        "of the bf16 weight gradient (output / input gradient in the JSON), NCHW | channels-last"
    )
    print("| conv | " + " | ".join(f"{s}x{s}" for s in args.sizes) + " |")
    print("| --- |" + " ---: |" * len(args.sizes))
    results, wrong = [], []
    for name, (kernel, padding, dilation) in CONVS.items():
        cells = []
        for size in args.sizes:
            pair = []
            for channels_last in (False, True):
                errors = relative_errors(kernel, padding, dilation, size, channels_last)
                results.append({"conv": name, "size": size, "channels_last": channels_last, **errors})
                if max(errors.values()) > 0.05:
                    wrong.append((name, size, "channels-last" if channels_last else "NCHW"))
                pair.append(f"{100 * errors['weight_grad']:.2g}%")
            cells.append(" / ".join(pair))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        f"{len(wrong)} of {len(results)} cases off by more than 5%"
        + (": " + "; ".join(f"{n} at {s} {layout}" for n, s, layout in wrong) if wrong else "")
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
