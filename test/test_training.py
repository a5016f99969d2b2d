"""Training: the objective, the schedule, a run whose loss falls, exact kill-and-resume, DDP."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bevanet_core.models import build_model
from bevanet_core.training.build import poly_lr
from bevanet_core.training.checkpointing import load_training_checkpoint
from bevanet_core.training.config import load_config
from bevanet_core.training.distributed import ResumableBatchSampler
from bevanet_core.training.engine import train
from bevanet_core.training.losses import BEVANetCriterion, LossWeights, OhemCrossEntropy, balanced_bce, lovasz_softmax

REPO = Path(__file__).resolve().parents[1]


def test_poly_lr_is_the_authors_schedule():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 100, 100) == 0.0


def test_ohem_keeps_only_hard_pixels():
    # 4 pixels, 2 classes: true-class probabilities 0.99, 0.95, 0.6, 0.3 (one pixel ignored)
    p = torch.tensor([0.99, 0.95, 0.6, 0.3, 0.5])
    logits = torch.stack([torch.log(p), torch.log(1 - p)], 0)[None, :, None, :]  # 1x2x1x5
    target = torch.tensor([[[0, 0, 0, 0, 255]]])
    ce = -torch.log(p[:4])
    # min_kept 1: threshold = max(p sorted[1] = 0.6, 0.9) = 0.9 -> pixels with p < 0.9
    assert OhemCrossEntropy(min_kept=1)(logits, target) == pytest.approx(ce[2:].mean().item(), rel=1e-5)
    # min_kept 3: threshold = max(p sorted[3] = 0.99, 0.9) = 0.99 -> p < 0.99
    assert OhemCrossEntropy(min_kept=3)(logits, target) == pytest.approx(ce[1:].mean().item(), rel=1e-5)
    assert OhemCrossEntropy()(logits, torch.full_like(target, 255)).item() == 0.0


def test_balanced_bce_weights_the_rare_side():
    logits = torch.tensor([0.0, 0.0, 0.0, 0.0])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # positives weigh 3/4, negatives 1/4, each term log(2)
    expected = (0.75 + 3 * 0.25) / 4 * torch.log(torch.tensor(2.0))
    assert balanced_bce(logits, target) == pytest.approx(expected.item(), rel=1e-6)


def _training_outputs():
    """Seeded BEVANet-S training outputs on a 64x64 batch of 2, with targets and edges."""
    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=11, aux_heads=True)
    outputs = model(torch.randn(2, 3, 64, 64))
    target = torch.randint(0, 11, (2, 64, 64))
    edge = (torch.rand(2, 64, 64) > 0.8).float()
    return outputs, target, edge


def test_criterion_combines_the_four_terms():
    outputs, target, edge = _training_outputs()
    losses = BEVANetCriterion()(outputs, target, edge)
    w = 0.4 * losses["aux"] + losses["main"] + 20 * losses["boundary"] + losses["guided"]
    assert losses["loss"].item() == pytest.approx(w.item(), rel=1e-5)
    up = F.interpolate(outputs.aux, size=(64, 64), mode="bilinear", align_corners=True)
    assert losses["aux"].item() == pytest.approx(F.cross_entropy(up, target).item(), rel=1e-5)


def test_lovasz_softmax_is_one_minus_iou_of_hard_predictions():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (2, 20, 30), generator=g)
    target[0, :3] = 255  # ignored
    pred = torch.randint(0, 6, (2, 20, 30), generator=g)  # class 5: predicted, never labelled
    pred[1, 5:9, 5:9] = 0
    onehot = F.one_hot(pred, 6).permute(0, 3, 1, 2).float()
    valid = target != 255
    ious = []
    for c in range(5):
        inter = ((target == c) & (pred == c) & valid).sum()
        union = (((target == c) | (pred == c)) & valid).sum()
        ious.append(inter / union)
    expected = 1 - torch.stack(ious).mean()
    assert lovasz_softmax(onehot, target).item() == pytest.approx(expected.item(), abs=1e-6)
    assert lovasz_softmax(onehot, torch.full_like(target, 255)).item() == 0.0


def test_lovasz_softmax_min_error_leaves_out_at_most_min_error_per_class():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 24, 24) * 4
    target = torch.randint(0, 4, (2, 24, 24))
    logits.scatter_add_(1, target.unsqueeze(1), torch.full((2, 1, 24, 24), 6.0))  # confident
    exact = lovasz_softmax(logits.softmax(1), target)
    for min_error in (1e-3, 0.05, 0.3):
        cut = lovasz_softmax(logits.softmax(1), target, min_error=min_error)
        assert 0 <= (exact - cut).item() <= min_error + 1e-6
    x = logits.clone().requires_grad_()
    lovasz_softmax(x.softmax(1), target, min_error=1e-3).backward()
    assert x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_criterion_adds_the_lovasz_term_only_when_weighted():
    outputs, target, edge = _training_outputs()
    plain = BEVANetCriterion()(outputs, target, edge)
    assert "lovasz" not in plain
    losses = BEVANetCriterion(weights=LossWeights(lovasz=0.5))(outputs, target, edge)
    main = F.interpolate(outputs.main, size=(64, 64), mode="bilinear", align_corners=True)
    assert losses["lovasz"].item() == pytest.approx(lovasz_softmax(main.softmax(1), target).item(), abs=1e-3)
    assert losses["loss"].item() == pytest.approx((plain["loss"] + 0.5 * losses["lovasz"]).item(), rel=1e-5)
    assert load_config(None, ["loss.lovasz=0.5"]).loss.lovasz == 0.5


def _cfg(data_root: Path, out_dir: Path, iterations: int, **extra):
    overrides = [
        f"data.root={data_root}",
        "data.train_list=train.lst",
        "data.val_list=val.lst",
        "data.base_size=128",
        "data.crop_size=[128,96]",
        "data.workers=0",
        "optim.batch_size=2",
        f"optim.iterations={iterations}",
        f"run.out_dir={out_dir}",
        "run.log_every=1",
        "run.checkpoint_every=1",
        "run.val_every=0",
        "run.threads=1",
    ]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, overrides)


def _losses(out_dir: Path, term: str = "loss"):
    return [
        r[f"train/{term}"]
        for r in map(json.loads, (out_dir / "train.log.jsonl").read_text().splitlines())
        if "train/loss" in r
    ]


def test_short_training_run_loss_falls(camvid_subset, tmp_path):
    data = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    cfg = _cfg(
        data,
        tmp_path / "run",
        14,
        **{
            "optim.lr": 0.01,
            "data.scale_min": 1.0,
            "data.scale_max": 1.0,
            "data.flip": False,
            "run.checkpoint_every": 0,
        },
    )
    result = train(cfg)
    assert len(_losses(tmp_path / "run")) == 14 and result["iteration"] == 14
    # the total is not monotone (the boundary-guided OHEM term switches on once sigmoid(boundary)
    # passes 0.8 somewhere), so each always-on term must fall on its own
    for term, factor in (("main", 0.75), ("aux", 0.95), ("boundary", 0.95)):
        values = _losses(tmp_path / "run", term)
        assert sum(values[-3:]) / 3 < factor * sum(values[:3]) / 3, (term, values)
    assert (tmp_path / "run" / "best.safetensors").is_file() and (tmp_path / "run" / "config.yaml").is_file()


def test_killed_run_resumes_to_the_same_state(camvid_subset, tmp_path):
    data = camvid_subset(tmp_path / "data", train=4, val_from_train=True)
    # uninterrupted reference
    train(_cfg(data, tmp_path / "ref", 6, **{"run.ema_decay": 0.9}))
    reference = load_training_checkpoint(tmp_path / "ref" / "last.pt")
    # the same run in a subprocess, SIGKILLed once a mid-run checkpoint exists
    victim = tmp_path / "victim"
    cmd = [sys.executable, "-m", "bevanet_core.cli.train", "--set"] + [
        o
        for o in (
            f"data.root={data}",
            "data.train_list=train.lst",
            "data.val_list=val.lst",
            "data.base_size=128",
            "data.crop_size=[128,96]",
            "data.workers=0",
            "optim.batch_size=2",
            "optim.iterations=6",
            f"run.out_dir={victim}",
            "run.log_every=1",
            "run.checkpoint_every=1",
            "run.val_every=0",
            "run.threads=1",
            "run.ema_decay=0.9",
        )
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        ckpt = victim / "last.pt"
        if ckpt.is_file():
            try:
                it = load_training_checkpoint(ckpt)["iteration"]
            except RuntimeError:
                it = 0  # never happens with atomic writes; tolerated only while polling
            if it >= 2:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = it
                break
        time.sleep(0.05)
    assert killed_at is not None and killed_at < 6, "the run was not killed mid-way"
    state_at_kill = load_training_checkpoint(victim / "last.pt")["iteration"]
    assert 2 <= state_at_kill < 6
    result = train(_cfg(data, victim, 6, **{"run.ema_decay": 0.9}), resume="auto")
    assert result["iteration"] == 6
    resumed = load_training_checkpoint(victim / "last.pt")
    for key, value in reference["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["ema"]["updates"] == reference["ema"]["updates"] == 6
    for key, value in reference["ema"]["model"].items():
        assert torch.equal(value, resumed["ema"]["model"][key]), f"ema {key}"
    ref_mom = reference["optimizer"]["state"]
    for idx, st in ref_mom.items():
        assert torch.equal(st["momentum_buffer"], resumed["optimizer"]["state"][idx]["momentum_buffer"])


def test_sampler_splits_ranks_disjointly_and_resumes_mid_epoch():
    full = [b for b in ResumableBatchSampler(20, 2, seed=1, epoch=3)]
    r0 = list(ResumableBatchSampler(20, 2, seed=1, epoch=3, rank=0, world_size=2))
    r1 = list(ResumableBatchSampler(20, 2, seed=1, epoch=3, rank=1, world_size=2))
    seen0 = {i for b in r0 for i, _ in b}
    seen1 = {i for b in r1 for i, _ in b}
    assert not seen0 & seen1 and len(seen0 | seen1) == 20
    assert list(ResumableBatchSampler(20, 2, seed=1, epoch=3, start_batch=4)) == full[4:]
    assert full != list(ResumableBatchSampler(20, 2, seed=1, epoch=4))


def _ddp_worker(rank, world, port, batches, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=11, aux_heads=True).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    x, y, e = batches[rank]
    BEVANetCriterion()(ddp(x), y, e)["loss"].backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in model.named_parameters()}, out)
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_match_single_process_gradients(tmp_path):
    import socket

    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(2, 3, 64, 64, generator=g),
            torch.randint(0, 11, (2, 64, 64), generator=g),
            (torch.rand(2, 64, 64, generator=g) > 0.8).float(),
        )
        for _ in range(2)
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp_grads.pt"
    mp.spawn(_ddp_worker, args=(2, port, batches, str(out)), nprocs=2, join=True)
    ddp_grads = torch.load(out, weights_only=True)
    # single process: the same two micro-batches (BatchNorm statistics are per process in DDP),
    # gradients averaged as DDP's all-reduce does. One thread as in the workers: OHEM's pixel
    # selection is a threshold, and float noise from another thread count can flip it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model("bevanet_s", num_classes=11, aux_heads=True).train()
        for x, y, e in batches:
            (BEVANetCriterion()(model(x), y, e)["loss"] / 2).backward()
    finally:
        torch.set_num_threads(threads)
    for name, p in model.named_parameters():
        assert torch.allclose(ddp_grads[name], p.grad, rtol=1e-4, atol=1e-6), name


def test_topk_ohem_matches_hand_computation():
    from bevanet_core.training.losses import TopKOhemCrossEntropy

    # 16 pixels, true-class probabilities: 4 hard (0.1) and 12 easy (0.99)
    p = torch.tensor([0.1] * 4 + [0.99] * 12)
    logits = torch.stack([torch.log(p), torch.log(1 - p)], 0)[None, :, None, :]
    target = torch.zeros(1, 1, 16, dtype=torch.long)
    # n_min = 16 / 16 = 1; the loss at rank 1 (-log 0.1) exceeds -log 0.7 -> mean of the 4 hard ones
    assert TopKOhemCrossEntropy()(logits, target) == pytest.approx(-torch.log(torch.tensor(0.1)).item(), rel=1e-5)


def test_laplacian_detail_target_and_dice():
    from bevanet_core.training.losses import dice_loss, laplacian_detail_target

    label = torch.zeros(1, 32, 32, dtype=torch.long)
    label[:, :, 16:] = 3
    target = laplacian_detail_target(label)
    # zero padding (as STDC-Seg) also marks a non-zero class at the frame edge, so look inside
    cols = target[0, 0, 8:24, :28].any(0).nonzero().flatten().tolist()
    assert cols and min(cols) >= 12 and max(cols) <= 19  # only around the class border
    assert not target[0, 0, 8:24, :12].any()
    assert dice_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(torch.zeros_like(target), target).item() > 0.9


def test_objective_is_chosen_by_output_type():
    from bevanet_core.training.build import build_criterion

    objective = build_criterion(load_config(None, []))
    target = torch.randint(0, 3, (2, 64, 64))
    edge = torch.zeros(2, 64, 64)
    for name, terms in (
        ("bisenetv2", {"main", "aux2", "aux3", "aux4", "aux5_4"}),
        ("stdc1", {"main", "aux16", "aux32", "detail_bce", "detail_dice"}),
        ("pidnet_s", {"aux", "main", "boundary", "guided"}),
        ("bssnet_t", {"main", "border", "boundary_ce", "reconstruction", "aux3", "aux4"}),
        ("van_tiny_lightham", {"main"}),
    ):
        out = objective(build_model(name, num_classes=3, aux_heads=True)(torch.randn(2, 3, 64, 64)), target, edge)
        assert terms <= set(out) and torch.isfinite(out["loss"]), name
        out["loss"].backward()
    with pytest.raises(TypeError, match="no training objective for model outputs of type Tensor"):
        objective(torch.zeros(1, 3, 8, 8), target, edge)


# each family once, and with it one of the authors' optimiser settings (STDC: heads x10 and a
# geometric warm-up with colour jitter; BSSNet: photometric distortion; Light-Ham: AdamW)
FAMILY_RECIPES = {
    "bisenetv2": {"optim.warmup_iters": 1, "optim.warmup_ratio": 0.1, "optim.min_lr": 1e-4},
    "stdc1": {
        "optim.lr_mult": {"": 10.0, "cp.backbone": 1.0},
        "optim.warmup_iters": 1,
        "optim.warmup_mode": "exp",
        "data.photometric": "jitter",
    },
    "bssnet_t": {"data.photometric": "distortion"},
    "van_tiny_lightham": {"optim.name": "adamw", "optim.lr": 6e-5, "optim.no_decay": ["norm"]},
}


@pytest.mark.parametrize("variant", list(FAMILY_RECIPES))
def test_other_families_train_with_the_same_engine(camvid_subset, tmp_path, variant):
    data = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    result = train(
        _cfg(
            data,
            tmp_path / "run",
            2,
            **{"model.variant": variant, "run.checkpoint_every": 0, **FAMILY_RECIPES[variant]},
        )
    )
    losses = _losses(tmp_path / "run")  # logged every iteration
    assert result["iteration"] == 2 and len(losses) == 2, losses
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_diverging_run_stops_with_a_named_error_and_a_hint(camvid_subset, tmp_path):
    data = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    cfg = _cfg(
        data,
        tmp_path / "run",
        6,
        **{"model.variant": "pidnet_s", "optim.lr": 1e12, "run.checkpoint_every": 0, "run.precision": "bf16"},
    )
    with pytest.raises(
        FloatingPointError,
        match=r"loss became (nan|inf) at iteration \d; with "
        r"run.precision=bf16 try fp32",
    ):
        train(cfg)


def test_cpu_bf16_channels_last_keeps_dilated_depthwise_convs_nchw_and_their_gradients_right():
    """VAN's dilated depthwise convs get wrong bf16 weight gradients from the CPU's channels-last
    kernel (test_van.py). In a channels-last bf16 run they get NCHW inputs, every other conv
    channels-last, and every conv's bf16 weight gradient matches float32 arithmetic on the same
    data (240 x 240 puts VAN's block2 at 30 x 30, where the kernel goes wrong)."""
    from bevanet_core.models.layers import dilated_depthwise_convs
    from bevanet_core.training.build import keep_dilated_depthwise_convs_nchw
    from bevanet_core.training.lightham_loss import LightHamCriterion

    torch.manual_seed(0)
    model = build_model("van_tiny_lightham", num_classes=4, aux_heads=True).train()
    model.to(memory_format=torch.channels_last)
    kept = keep_dilated_depthwise_convs_nchw(model)
    assert len(kept) == 13 and kept[0].startswith("backbone.block1.0.attn")
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    seen = {}
    for n, m in convs.items():
        m.register_forward_hook(lambda mod, args, out, n=n: seen.__setitem__(n, [args[0].detach()]))
        m.register_full_backward_hook(lambda mod, gin, gout, n=n: seen[n].append(gout[0].detach()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 240, 240).contiguous(memory_format=torch.channels_last))
    LightHamCriterion()(out, torch.randint(0, 4, (2, 240, 240)), torch.zeros(2, 240, 240))["loss"].backward()
    dilated = {n for n, _ in dilated_depthwise_convs(model)}
    channels_last = {
        n
        for n, (x, _) in seen.items()
        if x.shape[1] > 1
        and x.shape[-1] > 1
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    }
    assert dilated and not dilated & channels_last
    assert len(channels_last) > len(convs) // 3, sorted(channels_last)  # the layout is in effect elsewhere
    errors = {}
    for n, m in convs.items():
        x, grad_out = seen[n]
        x = x.to(torch.bfloat16).float()
        ref = torch.nn.grad.conv2d_weight(
            x, m.weight.shape, grad_out.float(), m.stride, m.padding, m.dilation, m.groups
        )
        errors[n] = float((m.weight.grad - ref).abs().max() / ref.abs().max())
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:3]
    assert worst[0][1] < 0.05, f"bf16 weight gradients off by (relative, max): {worst}"


def test_channels_last_bf16_run_trains(camvid_subset, tmp_path):
    data = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    result = train(
        _cfg(
            data,
            tmp_path / "run",
            2,
            **{
                "model.variant": "bevanet_s",
                "run.precision": "bf16",
                "run.channels_last": True,
                "run.checkpoint_every": 0,
            },
        )
    )
    assert result["iteration"] == 2


# --------------------------------------------------------------------------- the fast objective


def _reference_ohem(logits, target, ignore_index=255, thresh=0.9, min_kept=131072, weight=None):
    """The straightforward OHEM of the authors' code: softmax, full sort, boolean selection."""
    pixel_losses = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none").reshape(
        -1
    )
    valid = target.reshape(-1) != ignore_index
    prob = logits.detach().softmax(1).gather(1, target.masked_fill(target == ignore_index, 0).unsqueeze(1))
    prob = prob.reshape(-1)[valid]
    sorted_prob, order = prob.sort()
    threshold = max(sorted_prob[min(min_kept, sorted_prob.numel() - 1)].item(), thresh)
    losses = pixel_losses[valid][order]
    return losses[sorted_prob < threshold].mean()


def _reference_criterion(outputs, target, edge, weight=None, min_kept=131072):
    """0.4 CE(aux) + OHEM(main) + 20 balanced BCE(boundary) + OHEM(main | boundary > 0.8), each
    head upsampled with F.interpolate, the OHEM terms computed independently."""
    aux, main, boundary = (
        F.interpolate(o.float(), size=target.shape[-2:], mode="bilinear", align_corners=True) for o in outputs
    )
    e = edge.reshape(-1)
    pos, neg = (e == 1).sum(), (e == 0).sum()
    w = torch.where(e == 1, neg / (pos + neg), pos / (pos + neg))
    bce = F.binary_cross_entropy_with_logits(boundary[:, 0].reshape(-1), e, w)
    guided = torch.where(torch.sigmoid(boundary[:, 0]) > 0.8, target, torch.full_like(target, 255))
    return (
        0.4 * F.cross_entropy(aux, target, weight=weight, ignore_index=255)
        + _reference_ohem(main, target, min_kept=min_kept, weight=weight)
        + 20 * bce
        + _reference_ohem(main, guided, min_kept=min_kept, weight=weight)
    )


@pytest.mark.parametrize("confident", [False, True], ids=["threshold-0.9", "threshold-at-rank-min-kept"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "class-weights"])
def test_criterion_equals_the_straightforward_objective(confident, weighted):
    from bevanet_core.models.bevanet import SegmentationOutputs

    torch.manual_seed(0)
    n, h, w = 2, 96, 128
    target = torch.randint(0, 11, (n, h, w))
    target[:, :8] = 255  # an ignored band
    edge = (torch.rand(n, h, w) > 0.85).float()
    scale = 8.0 if confident else 1.0  # confident logits: fewer than min_kept pixels below 0.9
    heads = [torch.randn(n, c, h // 8, w // 8) * scale for c in (11, 11, 1)]
    if confident:  # make the true class the most likely one at most pixels
        small = F.interpolate(target[:, None].float(), size=(h // 8, w // 8), mode="nearest")[:, 0].long()
        heads[1] += 10 * F.one_hot(small.clamp(max=10), 11).permute(0, 3, 1, 2)
    weights = [0.5 + 0.1 * i for i in range(11)] if weighted else None
    criterion = BEVANetCriterion(ohem_min_kept=3000, class_weights=weights)
    weight = torch.tensor(weights) if weights else None
    results = []
    for fn in (
        lambda o: criterion(o, target, edge)["loss"],
        lambda o: _reference_criterion(o, target, edge, weight, min_kept=3000),
    ):
        leaves = [t.clone().requires_grad_() for t in heads]
        loss = fn(SegmentationOutputs(*leaves))
        loss.backward()
        results.append((loss.detach(), [t.grad for t in leaves]))
    (fast, fast_grads), (ref, ref_grads) = results
    assert fast.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_ohem_threshold_branches_both_match_the_sort():
    """The count shortcut (rank k below thresh) and the kthvalue branch against a full sort."""
    torch.manual_seed(1)
    target = torch.randint(0, 5, (1, 40, 50))
    for scale, min_kept in ((0.5, 100), (20.0, 100), (20.0, 1999)):
        logits = torch.randn(1, 5, 40, 50) * scale
        fast = OhemCrossEntropy(min_kept=min_kept)(logits, target)
        assert fast.item() == pytest.approx(_reference_ohem(logits, target, min_kept=min_kept).item(), rel=1e-5)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("sizes", [((45, 60), (360, 480)), ((12, 16), (96, 128)), ((7, 5), (50, 37)), ((1, 3), (4, 9))])
def test_matrix_upsampling_equals_interpolate(align_corners, sizes):
    from bevanet_core.training.losses import upsample_bilinear

    (h, w), size = sizes
    x = torch.randn(2, 3, h, w, requires_grad=True)
    ours = upsample_bilinear(x, size, align_corners)
    theirs = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(theirs)
    (grad_ours,) = torch.autograd.grad(ours, x, g)
    (grad_theirs,) = torch.autograd.grad(theirs, x, g)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-4, atol=1e-4)


def test_weight_ema_averages_floats_and_copies_integer_buffers():
    from bevanet_core.training.averaging import WeightEMA

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    ema = WeightEMA(model, decay=0.5)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # first update: decay min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.model[0].weight, d * start + (1 - d) * model[0].weight)
    assert int(ema.model[1].num_batches_tracked) == 7
    assert not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        WeightEMA(model, decay=1.0)


def test_run_validates_and_ships_the_averaged_weights(camvid_subset, tmp_path):
    """With run.ema_decay the kept best.safetensors holds the average, named by its iteration and
    val mIoU, and both the average and the raw weights are logged."""
    from bevanet_core.checkpoint import read_checkpoint

    data = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    result = train(
        _cfg(data, tmp_path / "run", 4, **{"run.ema_decay": 0.9, "run.val_every": 2, "run.checkpoint_every": 0})
    )
    assert [h["iteration"] for h in result["history"]] == [2, 4]
    assert all("val_miou_raw_weights" in h for h in result["history"])
    state, info = read_checkpoint(tmp_path / "run" / "best.safetensors")
    ckpt = load_training_checkpoint(tmp_path / "run" / "last.pt")
    best_entry = max(result["history"], key=lambda h: h["val_miou"])
    assert info.extra["iteration"] == best_entry["iteration"]
    assert info.extra["val_miou"] == round(best_entry["val_miou"], 2)
    if best_entry["iteration"] == 4:  # the file is the average, not the raw weights
        key = "head.conv2.weight"
        assert torch.equal(state[key], ckpt["ema"]["model"][key])
        assert not torch.equal(state[key], ckpt["model"][key])


def test_start_iteration_continues_the_schedule(camvid_subset, tmp_path):
    data = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    result = train(
        _cfg(data, tmp_path / "run", 10, **{"run.start_iteration": 8, "run.checkpoint_every": 0, "optim.lr": 0.01})
    )
    assert result["iteration"] == 10
    lrs = [
        r["train/lr"]
        for r in map(json.loads, (tmp_path / "run" / "train.log.jsonl").read_text().splitlines())
        if "train/lr" in r
    ]
    assert lrs == [pytest.approx(poly_lr(0.01, 8, 10)), pytest.approx(poly_lr(0.01, 9, 10))]
    with pytest.raises(ValueError, match="start_iteration"):
        train(_cfg(data, tmp_path / "bad", 10, **{"run.start_iteration": 10}))


def test_window_gain_is_the_rise_of_the_best_figure_over_the_window():
    from bevanet_core.training.plateau import is_flat, window_gain

    # the held-out twin's curve, 1,000 to 3,000: its best rose from 30.66 (at 1,000) to 37.06 (at 2,800)
    twin = [30.66, 32.18, 32.78, 33.44, 34.31, 35.24, 36.32, 36.68, 36.68, 37.06, 36.95]
    history = [{"iteration": 1000 + 200 * i, "val_miou": v} for i, v in enumerate(twin)]
    assert window_gain(history, 2000) == pytest.approx(37.06 - 30.66)
    assert window_gain(history, 400) == pytest.approx(37.06 - 36.68)  # best up to 2,600; best after it
    assert window_gain(history, 200) == pytest.approx(36.95 - 37.06)  # the last figure is below 2,800's
    assert window_gain(history, 2200) is None  # the history does not reach back 2,200 iterations
    assert window_gain(history, 0) is None and window_gain([], 2000) is None
    # a fall counts as a negative gain, and a dip inside the window does not hide an earlier best
    falling = [{"iteration": i, "val_miou": v} for i, v in ((0, 40.0), (100, 39.0), (200, 38.5))]
    assert window_gain(falling, 200) == pytest.approx(-1.0)
    assert is_flat(falling, 200, 0.5) and not is_flat(history, 2000, 0.5) and not is_flat(history, 2200, 0.5)
    assert is_flat(history, 400, 0.5)


def test_run_ends_on_a_flat_curve_and_stays_ended_when_resumed(camvid_subset, tmp_path):
    """run.plateau_window: the run stops, validated and checkpointed, at the first validation where
    its mIoU rose less than run.plateau_gain over the window; resumed, it does not train on until
    the window is taken away."""
    data = camvid_subset(tmp_path / "data", train=2, val_from_train=True)
    flat = {"run.val_every": 1, "run.plateau_window": 2, "run.plateau_gain": 100, "run.checkpoint_every": 0}
    result = train(_cfg(data, tmp_path / "run", 8, **flat))
    # the first validation with one a whole window before it is at iteration 3, and no model gains
    # 100 points
    assert result["plateau"] is True and result["iteration"] == 3
    assert [h["iteration"] for h in result["history"]] == [1, 2, 3]
    assert load_training_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "train.log.jsonl").read_text().splitlines()]
    assert records[-1]["iteration"] == 3 and "val/plateau_gain" in records[-1]
    assert sum("train/loss" in r for r in records) == 3

    again = train(_cfg(data, tmp_path / "run", 8, **flat), resume="auto")
    assert again["plateau"] is True and again["iteration"] == 3 and len(again["history"]) == 3
    assert sum("train/loss" in json.loads(line) for line in (tmp_path / "run" / "train.log.jsonl").open()) == 3

    # without the window, the resumed run trains on to the schedule's end
    on = train(_cfg(data, tmp_path / "run", 8, **{**flat, "run.plateau_window": 0}), resume="auto")
    assert "plateau" not in on and on["iteration"] == 8


def test_plateau_window_needs_validations_inside_it(tmp_path):
    from bevanet_core.training.config import ConfigError

    with pytest.raises(ConfigError, match=r"run.plateau_window \(2000\).*run.val_every \(0\)"):
        _cfg(tmp_path, tmp_path / "run", 8, **{"run.plateau_window": 2000, "run.val_every": 0})
    with pytest.raises(ConfigError, match=r"run.val_every \(400\)"):
        _cfg(tmp_path, tmp_path / "run", 8, **{"run.plateau_window": 200, "run.val_every": 400})
    assert _cfg(tmp_path, tmp_path / "run", 8, **{"run.plateau_window": 400, "run.val_every": 400})
