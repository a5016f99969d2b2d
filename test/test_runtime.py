"""Runtime (PyTorch backend): encodings, bad inputs, batching, exact stretch/letterbox geometry."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bevanet_core.checkpoint import ModelInfo
from bevanet_core.imaging.geometry import parse_size
from bevanet_core.models import build_model
from bevanet_core.runtime import Segmenter, SegmenterConfig, plan_resize

pytestmark = pytest.mark.usefixtures("one_thread")


def _data_root() -> Path:
    return Path(os.environ.get("BEVANET_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _kitti_frame() -> np.ndarray:
    path = _data_root() / "kitti_gray_seq" / "000000.png"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    from PIL import Image

    frame = np.asarray(Image.open(path))
    assert frame.shape == (370, 1226) and frame.dtype == np.uint8
    return frame


class StripeModel(nn.Module):
    """Synthetic 'network': one-hot logits at 1/8 whose class is the 1/8 column index // 4,
    whatever the input. Bilinear upsampling of one-hot maps puts label edges exactly on
    cell edges, so both upsampling modes have a closed-form expected mask."""

    def __init__(self, num_classes: int = 5, rows: bool = False):
        super().__init__()
        self.num_classes, self.rows = num_classes, rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        idx = torch.arange(h // 8 if self.rows else w // 8) // 4 % self.num_classes
        onehot = F.one_hot(idx, self.num_classes).T.float()  # C x cells
        shape = (1, self.num_classes, h // 8, 1) if self.rows else (1, self.num_classes, 1, w // 8)
        return onehot.reshape(shape).expand(n, -1, h // 8, w // 8).clone()


class PaddingDetector(nn.Module):
    """Class 1 where an 8x8 cell of the normalised input is all 0 (letterbox padding), else 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = F.avg_pool2d(x.abs().sum(1, keepdim=True), 8)
        is_pad = (energy == 0).float()
        return torch.cat([1 - is_pad, is_pad], dim=1)


def _info(num_classes: int) -> ModelInfo:
    return ModelInfo.default("bevanet_s", num_classes)


@pytest.fixture(scope="module")
def seeded_segmenter():
    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=11)
    return Segmenter.from_model(model, _info(11), input_size=(64, 48))


def _expected_stripes(
    in_w: int,
    in_h: int,
    net: tuple,
    mode: str,
    n_cls: int = 5,
    rows: bool = False,
    align_corners: bool = False,
):
    """Independent closed form of the read-back: pixel centre -> network coordinate -> the
    position in 1/8 cells where training's upsampling put it -> stripe. Stripes of 4 cells
    meet half-way between cells 4k + 3 and 4k + 4, in both upsampling modes."""
    net_w, net_h = net
    if mode == "stretch":
        x0, y0, cw, ch = 0, 0, net_w, net_h
    else:
        s = min(net_w / in_w, net_h / in_h)
        cw, ch = min(net_w, round(in_w * s)), min(net_h, round(in_h * s))
        x0, y0 = (net_w - cw) // 2, (net_h - ch) // 2
    if rows:
        u, n_net = y0 + (np.arange(in_h) + 0.5) * ch / in_h, net_h
    else:
        u, n_net = x0 + (np.arange(in_w) + 0.5) * cw / in_w, net_w
    cells = n_net // 8
    if align_corners:  # cell 0 and the last cell on the first and last network pixel centres
        j = (u - 0.5) * (cells - 1) / (n_net - 1)
    else:  # cells tile the network input
        j = u / 8 - 0.5
    j = np.clip(j, 0, cells - 1)
    cls = (np.floor((j + 0.5) / 4).astype(int)) % n_cls
    edge = np.abs((j + 0.5) / 4 - np.round((j + 0.5) / 4)) * 32  # to a stripe edge, network px
    if rows:
        return np.repeat(cls[:, None], in_w, 1), np.repeat(edge[:, None], in_w, 1)
    return np.repeat(cls[None], in_h, 0), np.repeat(edge[None], in_h, 0)


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("upsample", ["logits", "labels"])
@pytest.mark.parametrize("rows", [False, True])
@pytest.mark.parametrize("variant", ["bevanet_s", "bisenetv2"])  # align_corners True / False
def test_mask_maps_back_pixel_exactly_on_odd_kitti_size(mode, upsample, rows, variant):
    frame = _kitti_frame()  # 1226 x 370 mono8
    net = (256, 160) if not rows else (160, 256)  # letterbox pads columns or rows
    seg = Segmenter.from_model(
        StripeModel(rows=rows),
        ModelInfo.default(variant, 5),
        input_size=net,
        resize=mode,
        upsample=upsample,
        fold_bn=False,
    )
    mask = seg.segment(frame, "mono8").mask
    assert mask.shape == frame.shape and mask.dtype == np.uint8
    expected, edge_dist = _expected_stripes(1226, 370, net, mode, rows=rows, align_corners=variant == "bevanet_s")
    clear = edge_dist > 1e-3  # exactly on a stripe edge both labels are right
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(mask[clear], expected[clear])


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(
    "mode,frame,net",
    [
        ("stretch", (480, 360), (480, 360)),  # the network's own size
        ("stretch", (960, 540), (480, 360)),  # a camera frame of another size and aspect
        ("letterbox", (960, 540), (480, 360)),
    ],
)
@pytest.mark.parametrize("banded", [False, True])
def test_logits_are_read_back_where_training_put_the_labels(align_corners, mode, frame, net, banded):
    """Bilinear read-back of a logit ramp (value = cell index) is exact, so every frame pixel
    must get the cell coordinate that training's upsampling gives its network pixel: with
    align_corners=True, network pixel centre p (0-based) sits at cell p * (cells - 1) / (net - 1);
    with False, at (p + 0.5) / stride - 0.5. Both paths of the post-processor, both conventions."""
    from bevanet_core.imaging.processing import Postprocessor

    if banded and mode != "stretch":
        pytest.skip("the banded path serves stretch plans")
    (w, h), (net_w, net_h) = frame, net
    cells_w, cells_h = net_w // 8, net_h // 8
    ramp_x = torch.arange(cells_w, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 1, cells_h, -1)
    ramp_y = torch.arange(cells_h, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 1, -1, cells_w)
    logits = torch.cat([ramp_x, ramp_y]).reshape(1, 2, cells_h, cells_w)
    plan = plan_resize(frame, net, mode)
    post = Postprocessor("logits", align_corners=align_corners)
    if banded:
        # the banded path returns labels: read the positions back from the widening it uses
        wide, *_ = post._widen(logits, plan)
        got_x = wide[0, 0, 0].numpy()
    else:
        got_x = post.upsample_logits(logits, plan)[0, 0, h // 2].numpy()
    # the network pixel centre (0-based) of every frame column, then training's cell coordinate
    p = plan.to_network(np.arange(w) + 0.5, np.zeros(1))[0] - 0.5
    if align_corners:
        want = p * (cells_w - 1) / (net_w - 1)
        torch_up = F.interpolate(ramp_x[:, :, :1], size=(1, net_w), mode="bilinear", align_corners=True)
    else:
        want = (p + 0.5) / 8 - 0.5
        torch_up = F.interpolate(ramp_x[:, :, :1], size=(1, net_w), mode="bilinear", align_corners=False)
    want = np.clip(want, 0, cells_w - 1)
    # the convention is torch's own upsampling to the network size, as the objective does it
    centre = np.arange(net_w)
    np.testing.assert_allclose(
        torch_up[0, 0, 0].numpy(),
        np.clip(centre * (cells_w - 1) / (net_w - 1) if align_corners else (centre + 0.5) / 8 - 0.5, 0, cells_w - 1),
        atol=1e-4,
    )
    np.testing.assert_allclose(got_x, want, atol=1e-3)


def test_every_family_is_read_back_as_its_objective_upsamples_its_main_logits(monkeypatch):
    """options.logits_align_corners agrees with the align_corners each family's training
    objective upsamples its main logits with (one variant per family)."""
    from bevanet_core.options import logits_align_corners
    from bevanet_core.training import bssnet_loss, lightham_loss
    from bevanet_core.training import losses as losses_mod
    from bevanet_core.training.losses import BEVANetCriterion
    from bevanet_core.training.objective import TrainingObjective

    seen = []
    real_interpolate, real_upsample = F.interpolate, losses_mod.upsample_bilinear

    def spy_interpolate(x, *args, **kwargs):
        seen.append((x.data_ptr(), kwargs.get("align_corners")))
        return real_interpolate(x, *args, **kwargs)

    def spy_upsample(x, size, align_corners):
        seen.append((x.data_ptr(), align_corners))
        return real_upsample(x, size, align_corners)

    for module in (losses_mod, bssnet_loss, lightham_loss):
        monkeypatch.setattr(module.F, "interpolate", spy_interpolate)
    monkeypatch.setattr(losses_mod, "upsample_bilinear", spy_upsample)
    objective = TrainingObjective(BEVANetCriterion())
    torch.manual_seed(0)
    for variant in ("bevanet_s", "pidnet_s", "bssnet_t", "bisenetv2", "stdc1", "van_tiny_lightham"):
        model = build_model(variant, num_classes=5, aux_heads=True).train()
        outputs = model(torch.randn(2, 3, 64, 64))
        main = outputs.main.float()
        seen.clear()
        objective(outputs, torch.randint(0, 5, (2, 64, 64)), (torch.rand(2, 64, 64) > 0.8).float())
        flags = {flag for ptr, flag in seen if ptr in (outputs.main.data_ptr(), main.data_ptr())}
        assert flags == {logits_align_corners(variant)}, variant


@pytest.mark.parametrize("net", [(256, 256), (96, 256), (1232, 376)])
def test_letterbox_padding_never_leaks(net):
    frame = _kitti_frame()
    rgb = np.stack([frame, 255 - frame, frame // 2 + 60], axis=-1)  # nowhere equal to the mean colour
    seg = Segmenter.from_model(PaddingDetector(), _info(2), input_size=net, resize="letterbox", fold_bn=False)
    plan = seg.plan(1226, 370)
    assert (plan.content_w, plan.content_h) != plan.net_size  # there is padding
    for upsample in ("logits", "labels"):
        seg._post.upsample = upsample
        assert (seg.segment(rgb, "rgb8").mask == 0).all(), upsample


@pytest.mark.parametrize(
    "mode,net",
    [
        ("stretch", (1232, 376)),
        ("letterbox", (1280, 640)),
        ("letterbox", (1232, 1232)),
        ("stretch", (2048, 384)),
    ],
)
def test_geometry_round_trip_exact(mode, net):
    """Nearest forward into the network grid, then the read-back: identity for every pixel."""
    plan = plan_resize((1226, 370), net, mode)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 250, size=(370, 1226), dtype=np.uint8)
    # forward (network pixel centre -> the input pixel it shows), padding marked 255
    u, v = np.arange(net[0]) + 0.5, np.arange(net[1]) + 0.5
    xs, ys = plan.to_input(u, v)
    inside_x, inside_y = (xs >= 0) & (xs < 1226), (ys >= 0) & (ys < 370)
    xi, yi = np.clip(np.floor(xs).astype(int), 0, 1225), np.clip(np.floor(ys).astype(int), 0, 369)
    net_labels = np.where(inside_y[:, None] & inside_x[None], labels[yi[:, None], xi[None]], 255)
    rows, cols = plan.source_indices(stride=1)
    back = net_labels[rows[:, None], cols[None]]
    np.testing.assert_array_equal(back, labels)
    # and the continuous maps are inverses
    x = np.array([0.0, 0.5, 613.25, 1226.0])
    np.testing.assert_allclose(plan.to_input(*plan.to_network(x, x))[0], x, rtol=0, atol=1e-9)


def test_letterbox_plan_centres_and_keeps_aspect():
    plan = plan_resize((1226, 370), (480, 360), "letterbox")
    assert (plan.content_w, plan.content_h) == (480, 145)
    assert (plan.x0, plan.y0) == (0, 107)
    assert abs(plan.scale_x - plan.scale_y) < 0.01
    assert plan_resize((1226, 370), (480, 360), "stretch").content_box == (0, 0, 480, 360)


def test_every_encoding_gives_the_rgb_mask(seeded_segmenter):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(45, 67, 3), dtype=np.uint8)
    ref = seeded_segmenter.segment(rgb, "rgb8", confidence=True)
    assert ref.mask.shape == (45, 67) and ref.confidence.shape == (45, 67)
    alpha = rng.integers(0, 256, size=(45, 67, 1), dtype=np.uint8)
    variants = {
        "bgr8": rgb[..., ::-1],
        "bgr": rgb[..., ::-1].copy(),
        "rgb": rgb,
        "rgba8": np.concatenate([rgb, alpha], -1),
        "rgba": np.concatenate([rgb, alpha], -1),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], -1),
        "BGRA": np.concatenate([rgb[..., ::-1], alpha], -1),
    }
    for enc, frame in variants.items():
        res = seeded_segmenter.segment(frame, enc, confidence=True)
        np.testing.assert_array_equal(res.mask, ref.mask, err_msg=enc)
        np.testing.assert_array_equal(res.confidence, ref.confidence, err_msg=enc)
    gray = rgb[..., 1]
    ref_gray = seeded_segmenter.segment(np.repeat(gray[..., None], 3, -1), "rgb8").mask
    for enc, frame in {"mono8": gray, "mono": gray[..., None], "gray": gray}.items():
        np.testing.assert_array_equal(seeded_segmenter.segment(frame, enc).mask, ref_gray, err_msg=enc)


def test_batch_of_cameras_with_different_sizes_matches_single_frames(seeded_segmenter):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(48, 64, 3), (37, 101, 3), (48, 64, 3), (70, 30)]]
    encs = ["rgb8", "bgr8", "rgb8", "mono8"]
    batch = seeded_segmenter.segment_batch(frames, encs, confidence=True, color=True)
    assert len(batch) == 4
    for frame, enc, res in zip(frames, encs, batch, strict=True):
        single = seeded_segmenter.segment(frame, enc, confidence=True, color=True)
        assert res.mask.shape == frame.shape[:2]
        assert res.color.shape == frame.shape[:2] + (3,) and res.color.dtype == np.uint8
        np.testing.assert_array_equal(res.mask, single.mask)
        # batched convolutions may round differently in the last bit; confidence within 1 step
        assert np.abs(res.confidence.astype(int) - single.confidence.astype(int)).max() <= 1
        np.testing.assert_array_equal(res.color, seeded_segmenter.colorize(res.mask))
        assert set(res.timings) == {"preprocess", "inference", "postprocess"}


def test_max_batch_splits_into_several_inferences():
    torch.manual_seed(0)
    seg = Segmenter.from_model(StripeModel(), _info(5), input_size=(64, 64), max_batch=2, fold_bn=False)
    frames = [np.full((10 + i, 20, 3), i, np.uint8) for i in range(5)]
    out = seg.segment_batch(frames, "rgb8")
    assert [r.mask.shape for r in out] == [(10 + i, 20) for i in range(5)]


@pytest.mark.parametrize(
    "frame,enc,match",
    [
        (np.zeros((8, 8, 3), np.float32), "rgb8", "dtype uint8"),
        (np.zeros((8, 8, 3), np.uint16), "rgb8", "dtype uint8"),
        (np.zeros((8, 8, 4), np.uint8), "rgb8", "4 channels but encoding rgb8 needs 3"),
        (np.zeros((8, 8, 3), np.uint8), "mono8", "3 channels but encoding mono8 needs 1"),
        (np.zeros((8, 8), np.uint8), "bgr8", "needs 3 channels"),
        (np.zeros((0, 8, 3), np.uint8), "rgb8", "empty"),
        (np.zeros((8, 0), np.uint8), "mono8", "empty"),
        (np.zeros((8, 8, 3), np.uint8), "yuv422", "unknown image encoding 'yuv422'"),
        (np.zeros((2, 8, 8, 3, 1), np.uint8), "rgb8", "HxW or HxWxC"),
        ([[1, 2], [3, 4]], "mono8", "numpy array or torch tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(seeded_segmenter, frame, enc, match):
    with pytest.raises(ValueError, match=match):
        seeded_segmenter.segment(frame, enc)


def test_bad_batches_and_configs_raise_clear_errors(seeded_segmenter):
    with pytest.raises(ValueError, match="non-empty list"):
        seeded_segmenter.segment_batch([], [])
    with pytest.raises(ValueError, match="2 frames but 1 encodings"):
        seeded_segmenter.segment_batch([np.zeros((8, 8, 3), np.uint8)] * 2, ["rgb8"])
    with pytest.raises(ValueError, match="frame 1 has 1 channels"):
        seeded_segmenter.segment_batch([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 1), np.uint8)], "rgb8")
    model, info = StripeModel(), _info(5)
    with pytest.raises(ValueError, match="divisible by 8"):
        Segmenter.from_model(model, info, input_size=(100, 64))
    with pytest.raises(ValueError, match="resize must be one of"):
        Segmenter.from_model(model, info, resize="crop")
    with pytest.raises(ValueError, match="backend must be one of"):
        Segmenter.from_model(model, info, backend="tflite")
    with pytest.raises(ValueError, match="precision 'fp16' is not supported by the torch backend on cpu"):
        Segmenter.from_model(model, info, backend="torch", precision="fp16")
    with pytest.raises(ValueError, match="no usable CUDA") if not torch.cuda.is_available() else _noop():
        Segmenter.from_model(model, info, device="cuda")
    with pytest.raises(ValueError, match="weights file not found"):
        Segmenter(SegmenterConfig(weights="/nonexistent/model.safetensors"))
    assert parse_size("480x360", multiple=8) == (480, 360)


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_colorize_and_overlay(seeded_segmenter):
    mask = np.array([[0, 1], [255, 10]], np.uint8)
    color = seeded_segmenter.colorize(mask)
    assert color.shape == (2, 2, 3)
    assert color[0, 0].tolist() == seeded_segmenter.info.palette[0]
    assert color[1, 0].tolist() == [0, 0, 0]
    rgb = np.full((2, 2, 3), 200, np.uint8)
    over = seeded_segmenter.overlay(rgb, mask, alpha=0.5)
    assert over[1, 0].tolist() == [200, 200, 200]  # unlabeled keeps the image
    expected = np.rint(0.5 * 200 + 0.5 * np.array(seeded_segmenter.info.palette[1])).astype(int)
    assert over[0, 1].tolist() == expected.tolist()
    with pytest.raises(ValueError, match="sizes differ"):
        seeded_segmenter.overlay(rgb, np.zeros((3, 3), np.uint8))


def test_bf16_cpu_precision_runs_in_bf16_and_agrees_with_fp32():
    from bevanet_core.deploy import condition_for_parity

    torch.manual_seed(0)
    model = condition_for_parity(build_model("bevanet_s", num_classes=11).eval())
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 191, 64)[None, :, None] + np.linspace(0, 64, 48)[:, None, None]
    frame = (rng.integers(0, 64, (48, 64, 3)) + ramp).clip(0, 255).astype(np.uint8)
    fp32 = Segmenter.from_model(copy.deepcopy(model), _info(11), input_size=(64, 48))
    bf16 = Segmenter.from_model(model, _info(11), input_size=(64, 48), precision="bf16")
    assert next(bf16.backend.model.parameters()).dtype == torch.bfloat16
    ref, low = fp32.segment(frame).mask, bf16.segment(frame).mask
    assert len(np.unique(ref)) >= 3  # a mask that varies, so agreement means something
    assert low.shape == ref.shape and (low == ref).mean() > 0.9
