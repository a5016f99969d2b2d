"""Which input sizes a network can be exported at, known before exporting.

The ONNX exporters turn adaptive average/max pooling to an output larger than 1x1 into a fixed
kernel and stride, which exists only when the pooled feature map divides evenly (the
torchscript exporter otherwise fails deep inside with a SymbolicValueError). Whether it does
follows from the network's stride chain: each stride-2 convolution or pooling maps a side n to
ceil(n / 2), so the same width can work or fail depending on where the pooling sits.

`pooling_sites` runs the network once on the meta device (shapes only, no memory, no
arithmetic) and records every adaptive pooling with its input size; `check_exportable` refuses a
size that leaves one of them uneven, naming the pooling, the feature map and the nearest sizes
that work; `size_multiple` is the step at which every size works for that network (what
--help states). A size at which the network cannot run at all (a kernel larger than a tiny
feature map) is left to the exporter, which names the failing operation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_ADAPTIVE = {
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    F.adaptive_max_pool2d: "adaptive_max_pool2d",
}
PROBE_SIDE = 4096  # large power of two: the stride of each pooling comes out exact
# size_multiple() of each registered network, as stated in bevanet-export --help (a test
# recomputes it from the networks); a variant not named here has the plain step of 8
EXPORT_SIZE_MULTIPLES = {"bevanet": 128, "bevanet_s": 128}


class ExportSizeError(ValueError):
    """The network cannot be exported at the asked input size."""


@dataclass(frozen=True)
class PoolingSite:
    """One adaptive pooling met by a forward pass: its op, output size and input size."""

    op: str
    output: tuple[int, int]  # (h, w)
    feature: tuple[int, int]  # (h, w) of its input

    @property
    def exportable(self) -> bool:
        return all(o <= 1 or (f % o == 0) for f, o in zip(self.feature, self.output, strict=True))


class _Record(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.sites: list[PoolingSite] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _ADAPTIVE:
            x = args[0]
            size = args[1] if len(args) > 1 else kwargs.get("output_size")
            out = (size, size) if isinstance(size, int) else tuple(size)
            out = tuple(x.shape[-2 + i] if o is None else int(o) for i, o in enumerate(out))
            self.sites.append(PoolingSite(_ADAPTIVE[func], out, tuple(x.shape[-2:])))
        return func(*args, **kwargs)


def _meta_copy(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model).to("meta")
    return net.eval()


def _sites(net: nn.Module, width: int, height: int, name: str) -> list[PoolingSite]:
    rec = _Record()
    try:
        with torch.no_grad(), rec:
            net(torch.empty(1, 3, height, width, device="meta"))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportSizeError(f"{name} cannot run at {width}x{height}: {first}") from None
    return rec.sites


def pooling_sites(model: nn.Module, width: int, height: int) -> list[PoolingSite]:
    """Every adaptive pooling of one forward pass at width x height (shapes only). Raises
    ExportSizeError when the forward pass itself fails at that size."""
    return _sites(_meta_copy(model), width, height, type(model).__name__)


def _multiple(sites: list[PoolingSite], probe: int) -> int:
    step = 8
    for site in sites:
        for f, o in zip(site.feature, site.output, strict=True):
            if o > 1:
                step = math.lcm(step, (probe // f) * o)
    return step


def size_multiple(model: nn.Module) -> int:
    """The step s at which every width and height that is a multiple of s can be exported:
    the least common multiple of 8 and stride x output of each adaptive pooling."""
    return _multiple(pooling_sites(model, PROBE_SIDE, PROBE_SIDE), PROBE_SIDE)


def _side_ok(net: nn.Module, n: int, name: str) -> bool:
    """Whether a side of n works (the sides are independent: each follows its own chain)."""
    try:
        return all(s.exportable for s in _sites(net, n, n, name))
    except ExportSizeError:
        return False


def _nearest_side(net: nn.Module, n: int, name: str, reach: int = 32) -> int | None:
    for k in range(1, reach + 1):
        for cand in (n - 8 * k, n + 8 * k):
            if cand >= 8 and _side_ok(net, cand, name):
                return cand
    return None


def check_exportable(model: nn.Module, width: int, height: int) -> None:
    """Raises ExportSizeError naming the pooling that cannot be exported at width x height and
    the nearest sizes that work."""
    name = type(model).__name__
    net = _meta_copy(model)
    try:
        sites = _sites(net, width, height, name)
    except ExportSizeError:
        return  # the network cannot run at this size at all: the exporter says where
    bad = [s for s in sites if not s.exportable]
    if not bad:
        return
    site = bad[0]
    fh, fw = site.feature
    oh, ow = site.output
    step = _multiple(_sites(net, PROBE_SIDE, PROBE_SIDE, name), PROBE_SIDE)
    near_w = width if _side_ok(net, width, name) else _nearest_side(net, width, name)
    near_h = height if _side_ok(net, height, name) else _nearest_side(net, height, name)
    nearest = f"; the nearest that works is {near_w}x{near_h}" if near_w and near_h else ""
    raise ExportSizeError(
        f"{name} cannot be exported at {width}x{height}: its {site.op} to {ow}x{oh} meets a "
        f"{fw}x{fh} feature map, which does not divide evenly (ONNX has no uneven adaptive "
        f"pooling); every width and height that is a multiple of {step} works{nearest}"
    )
