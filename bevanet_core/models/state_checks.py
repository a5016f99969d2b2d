"""Checks of a state dict by meaning, beyond names and shapes: tensors a network could hold only
by a mistake (a file of another kind, or corrupt) that would still load and run, every pixel then
one class."""

from __future__ import annotations

from typing import Optional

import torch


def meaningless_tensors(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> Optional[str]:
    """What is wrong with `state` for a network whose own state dict is `own`, or None: integer or
    boolean values where the network has floating-point ones, a BatchNorm running variance below 0.
    (NaN and inf are `checkpoint.check_finite`'s, which a research flag can waive.)"""
    ints = [k for k, t in own.items() if t.is_floating_point() and k in state and not state[k].is_floating_point()]
    if ints:
        return (
            f"{len(ints)} tensor(s) hold {str(state[ints[0]].dtype).removeprefix('torch.')} values where the network "
            f"has floating-point ones (e.g. {', '.join(ints[:3])}); these are not weights of this network"
        )
    negative = [
        k for k, t in state.items() if k.endswith("running_var") and t.is_floating_point() and bool((t < 0).any())
    ]
    if negative:
        return (
            f"{len(negative)} BatchNorm running variance(s) hold values below 0 (e.g. {', '.join(negative[:3])}); "
            "a variance cannot be negative: the file is corrupt"
        )
    return None
