"""Where each input pixel lands in the network input, and the exact way back.

Coordinates are continuous *edge* coordinates: pixel i covers [i, i + 1) and its centre is
i + 0.5. The forward resize of the frame (bilinear, align_corners=False) maps network pixel
centre u + 0.5 to input coordinate (u + 0.5 - x0) * in_w / content_w, and `to_network` is its
exact inverse, so the mask is read back at precisely the place each input pixel was seen.

`stretch` fills the whole network input; `letterbox` keeps the aspect ratio, centres the
content and pads the rest (padding is never mapped back, so it cannot leak into a mask).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np
import torch

from ..options import RESIZE_MODES, parse_size  # noqa: F401 - part of this module's API

Size = tuple[int, int]  # (width, height)
DEFAULT_INPUT_SIZE: Size = (480, 360)  # used when neither the config nor the weights give one
NETWORK_STRIDE = 8


@dataclasses.dataclass(frozen=True)
class ResizePlan:
    """How one frame of `in_size` is placed into a network input of `net_size` (both (W, H))."""

    in_size: Size
    net_size: Size
    mode: str
    x0: int  # left edge of the content inside the network input
    y0: int
    content_w: int
    content_h: int

    @property
    def scale_x(self) -> float:
        """Network pixels per input pixel, horizontally."""
        return self.content_w / self.in_size[0]

    @property
    def scale_y(self) -> float:
        return self.content_h / self.in_size[1]

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the content in the network input; outside it is padding."""
        return self.x0, self.y0, self.x0 + self.content_w, self.y0 + self.content_h

    def to_network(self, x, y):
        """Input edge coordinates -> network edge coordinates (floats or arrays)."""
        return self.x0 + np.asarray(x, dtype=np.float64) * self.scale_x, self.y0 + np.asarray(
            y, dtype=np.float64
        ) * self.scale_y

    def to_input(self, u, v):
        """Network edge coordinates -> input edge coordinates (the inverse of `to_network`)."""
        return (np.asarray(u, dtype=np.float64) - self.x0) / self.scale_x, (
            np.asarray(v, dtype=np.float64) - self.y0
        ) / self.scale_y

    def source_positions(self, map_size: Size, align_corners: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """For every input column and row, the position, in cells, of the input pixel's centre
        in a `map_size` (w, h) map that covers the whole network input, clamped to the map.

        align_corners=False: the cells tile the network input (cell j's centre at network edge
        coordinate (j + 0.5) * net_w / w). align_corners=True: cell 0 and cell w - 1 sit on the
        centres of the network's first and last pixels. Bilinear read-back blends cells
        floor(p) and floor(p) + 1; nearest read-back takes the cell whose centre is closest.
        """
        (w, h), (map_w, map_h) = self.in_size, map_size
        u, v = self.to_network(np.arange(w) + 0.5, np.arange(h) + 0.5)
        net_w, net_h = self.net_size
        if align_corners:
            xs = (u - 0.5) * ((map_w - 1) / max(net_w - 1, 1))
            ys = (v - 0.5) * ((map_h - 1) / max(net_h - 1, 1))
        else:
            xs = u * (map_w / net_w) - 0.5
            ys = v * (map_h / net_h) - 0.5
        return np.clip(xs, 0.0, map_w - 1), np.clip(ys, 0.0, map_h - 1)

    def source_indices(self, stride: int = 1, align_corners: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """For every input row and column, the row/column index of the network output cell
        (of `stride` network pixels) nearest to the input pixel's centre, under the logits'
        cell placement (`source_positions`).

        Nearest-label read-back: `mask = labels[rows[:, None], cols[None, :]]`.
        """
        map_size = (self.net_size[0] // stride, self.net_size[1] // stride)
        xs, ys = self.source_positions(map_size, align_corners)
        # round half up: the cell whose centre is nearest (ties to the later cell)
        cols = np.clip(np.floor(xs + 0.5).astype(np.int64), 0, map_size[0] - 1)
        rows = np.clip(np.floor(ys + 0.5).astype(np.int64), 0, map_size[1] - 1)
        return rows, cols

    def sampling_grid(
        self,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        align_corners: bool = False,
    ) -> torch.Tensor:
        """(1, H_in, W_in, 2) grid for `F.grid_sample(..., align_corners=align_corners)` that
        reads a map covering the whole network input (at any stride) at every input pixel
        centre, with the map's cells placed as `source_positions` says."""
        w, h = self.in_size
        u, v = self.to_network(np.arange(w) + 0.5, np.arange(h) + 0.5)
        net_w, net_h = self.net_size
        if align_corners:  # -1 and +1: the centres of the first and last network pixels
            gx, gy = 2.0 * (u - 0.5) / max(net_w - 1, 1) - 1.0, 2.0 * (v - 0.5) / max(net_h - 1, 1) - 1.0
        else:  # -1 and +1: the outer edges of the network input
            gx, gy = 2.0 * u / net_w - 1.0, 2.0 * v / net_h - 1.0
        gx = torch.as_tensor(gx, dtype=dtype, device=device)
        gy = torch.as_tensor(gy, dtype=dtype, device=device)
        return torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]


def plan_resize(in_size: Size, net_size: Size, mode: str = "stretch") -> ResizePlan:
    """Plans the placement of an `in_size` frame into a `net_size` network input."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {mode!r}")
    in_w, in_h = int(in_size[0]), int(in_size[1])
    net_w, net_h = int(net_size[0]), int(net_size[1])
    if min(in_w, in_h, net_w, net_h) <= 0:
        raise ValueError(f"sizes must be positive, got input {in_size} and network {net_size}")
    if mode == "stretch":
        return ResizePlan((in_w, in_h), (net_w, net_h), mode, 0, 0, net_w, net_h)
    scale = min(net_w / in_w, net_h / in_h)
    cw = max(1, min(net_w, int(round(in_w * scale))))
    ch = max(1, min(net_h, int(round(in_h * scale))))
    return ResizePlan((in_w, in_h), (net_w, net_h), mode, (net_w - cw) // 2, (net_h - ch) // 2, cw, ch)


def resolve_input_size(requested, info, static: Optional[Size] = None) -> Size:
    """The network input size: fixed by an artifact (`static`), else the config's, else the
    weights' ModelInfo, else 480x360."""
    if static is not None:
        static = parse_size(static, "input_size", NETWORK_STRIDE)
        if requested is not None and parse_size(requested, "input_size", NETWORK_STRIDE) != static:
            raise ValueError(
                f"input_size {requested} differs from the {static[0]}x{static[1]} the exported "
                "model was built for; re-export it at that size or leave input_size unset"
            )
        return static
    size = requested or (info.input_size if info is not None and info.input_size else DEFAULT_INPUT_SIZE)
    return parse_size(size, "input_size", NETWORK_STRIDE)
