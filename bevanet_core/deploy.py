"""Deploy transforms: fold every BatchNorm that directly follows a convolution into it.

The graph is read with torch.fx to find `conv -> bn` pairs whose convolution output feeds
nothing but that BatchNorm; the folding itself is done on a copy of the module tree (the BN
becomes `nn.Identity`, the conv gains the scaled weights and a bias), so the result is still
an ordinary eager model: state-dict names, CUDA graphs, torch.compile and ONNX export keep
working. BatchNorms after other ops (BN-ReLU-conv pre-activations, additions, EVA's `norm1`
on a residual stream) cannot be folded into a preceding conv and are reported as remaining.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Union

import torch
import torch.fx as fx
import torch.nn as nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclasses.dataclass
class FoldReport:
    """Which BatchNorms were folded (bn name -> conv name) and which remain, with the reason."""

    folded: dict[str, str]
    remaining: dict[str, str]

    @property
    def num_folded(self) -> int:
        return len(self.folded)

    @property
    def num_remaining(self) -> int:
        return len(self.remaining)

    def summary(self) -> str:
        return f"folded {self.num_folded} BatchNorms into convolutions; {self.num_remaining} remain"


def _trace(model: nn.Module) -> fx.Graph:
    autowrap = []
    try:  # the models' size-dependent resize helper is opaque to symbolic tracing
        from .models.layers import resize_to

        autowrap.append(resize_to)
    except ImportError:  # pragma: no cover
        pass
    try:
        return fx.Tracer(autowrap_functions=tuple(autowrap)).trace(model)
    except Exception as exc:
        raise ValueError(
            f"fold_batchnorm: cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc})"
        ) from None


def find_conv_bn_pairs(model: nn.Module) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """([(conv name, bn name)] foldable, {bn name: why not}) read from the traced graph."""
    graph = _trace(model)
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs, remaining = [], {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BNS):
            continue
        bn_name = node.target
        src = node.args[0] if node.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules[src.target], _CONVS)):
            what = src.target if isinstance(src, fx.Node) else type(src).__name__
            remaining[bn_name] = f"input comes from {getattr(what, '__name__', what)}, not a convolution"
        elif len(src.users) != 1:
            remaining[bn_name] = f"output of {src.target} is also used elsewhere"
        elif calls[src.target] != 1 or calls[bn_name] != 1:
            remaining[bn_name] = f"{src.target} or {bn_name} is called more than once"
        elif not modules[bn_name].track_running_stats or modules[bn_name].running_mean is None:
            remaining[bn_name] = "BatchNorm without running statistics"
        else:
            pairs.append((src.target, bn_name))
    return pairs, remaining


@torch.no_grad()
def fuse_conv_bn_weights(conv: nn.Module, bn: nn.Module) -> None:
    """In place: conv(x) := bn(conv(x)) in eval mode (conv gets a bias if it had none)."""
    w = conv.weight
    scale = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_var)
    # float64 keeps the folded weights within fp32 rounding of the unfused result
    factor = scale.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(factor)
    new_w = w.double() * factor.reshape(-1, *([1] * (w.dim() - 1)))
    new_b = (bias - bn.running_mean.double()) * factor + shift.double()
    conv.weight.copy_(new_w.to(w.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(new_b.to(w.dtype), requires_grad=w.requires_grad)
    else:
        conv.bias.copy_(new_b.to(w.dtype))


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def fold_batchnorm(
    model: nn.Module, inplace: bool = False, return_report: bool = False
) -> Union[nn.Module, tuple[nn.Module, FoldReport]]:
    """Returns an eval-mode copy of `model` with every conv -> BatchNorm pair folded.

    With `return_report=True` also returns a `FoldReport` naming the folded and remaining BNs.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    pairs, remaining = find_conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        fuse_conv_bn_weights(model.get_submodule(conv_name), model.get_submodule(bn_name))
        _set_submodule(model, bn_name, nn.Identity())
    report = FoldReport(folded={bn: conv for conv, bn in pairs}, remaining=remaining)
    return (model, report) if return_report else model


def count_conv_bn_pairs(model: nn.Module) -> int:
    """How many foldable conv -> BatchNorm pairs a model still has (0 after `fold_batchnorm`)."""
    return len(find_conv_bn_pairs(model)[0])


def randomise_batchnorm(model: nn.Module, seed: int = 1) -> nn.Module:
    """Gives every BatchNorm non-trivial running statistics and affine terms (in place).

    Freshly built BNs are nearly the identity, which would make folding and export checks on
    untrained models pass trivially; checks call this first.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.25)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return model


def condition_for_parity(model: nn.Module, seed: int = 1) -> nn.Module:
    """Variance-preserving conv weights (Kaiming normal, from torch's global RNG) and mild,
    non-trivial BatchNorm / GroupNorm statistics and affine terms (from `seed`), in place.

    Untrained networks' own inits shrink or blow up the signal layer by layer, giving one class
    everywhere or logits too large for a float32 parity bound; after this, logits are O(1..10)
    and vary over the image, so export and runtime parity checks mean something. Milder than
    `randomise_batchnorm`, which stresses BN folding.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
        for m in model.modules():  # after the BNs, so BN-only networks draw the same values
            if isinstance(m, nn.GroupNorm) and m.weight is not None:
                m.weight.copy_(torch.rand(m.num_channels, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.num_channels, generator=g) * 0.1)
    return model
