"""Training: the objective, the schedule, a run whose loss falls, exact kill-and-resume, DDP."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bevanet_core.models import build_model
from bevanet_core.training.config import load_config
from bevanet_core.training.engine import ResumableBatchSampler, load_training_checkpoint, poly_lr, train
from bevanet_core.training.losses import BEVANetCriterion, OhemCrossEntropy, balanced_bce

REPO = Path(__file__).resolve().parents[1]


def test_poly_lr_is_the_authors_schedule():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5 ** 0.9)
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


def test_criterion_combines_the_four_terms():
    torch.manual_seed(0)
    model = build_model("bevanet_s", num_classes=11, aux_heads=True)
    outputs = model(torch.randn(2, 3, 64, 64))
    target = torch.randint(0, 11, (2, 64, 64))
    edge = (torch.rand(2, 64, 64) > 0.8).float()
    losses = BEVANetCriterion()(outputs, target, edge)
    w = 0.4 * losses["aux"] + losses["main"] + 20 * losses["boundary"] + losses["guided"]
    assert losses["loss"].item() == pytest.approx(w.item(), rel=1e-5)
    up = F.interpolate(outputs.aux, size=(64, 64), mode="bilinear", align_corners=True)
    assert losses["aux"].item() == pytest.approx(F.cross_entropy(up, target).item(), rel=1e-5)


def _mini_camvid(shared_data, root: Path, n: int = 2) -> Path:
    src = shared_data / "camvid"
    lines = (src / "train.lst").read_text().splitlines()[:n]
    for line in lines:
        for rel in line.split():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, root / rel)
    (root / "train.lst").write_text("\n".join(lines) + "\n")
    (root / "val.lst").write_text("\n".join(lines[:1]) + "\n")
    return root


def _cfg(data_root: Path, out_dir: Path, iterations: int, **extra):
    overrides = [f"data.root={data_root}", "data.train_list=train.lst", "data.val_list=val.lst",
                 "data.base_size=128", "data.crop_size=[128,96]", "data.workers=0", "optim.batch_size=2",
                 f"optim.iterations={iterations}", f"run.out_dir={out_dir}", "run.log_every=1",
                 "run.checkpoint_every=1", "run.val_every=0", "run.threads=1"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, overrides)


def _losses(out_dir: Path, term: str = "loss"):
    return [r[f"train/{term}"] for r in map(json.loads, (out_dir / "train.log.jsonl").read_text().splitlines())
            if "train/loss" in r]


def test_short_training_run_loss_falls(shared_data, tmp_path):
    data = _mini_camvid(shared_data, tmp_path / "data")
    cfg = _cfg(data, tmp_path / "run", 14, **{"optim.lr": 0.01, "data.scale_min": 1.0, "data.scale_max": 1.0,
                                              "data.flip": False, "run.checkpoint_every": 0})
    result = train(cfg)
    assert len(_losses(tmp_path / "run")) == 14 and result["iteration"] == 14
    # the total is not monotone (the boundary-guided OHEM term switches on once sigmoid(boundary)
    # passes 0.8 somewhere), so each always-on term must fall on its own
    for term, factor in (("main", 0.75), ("aux", 0.95), ("boundary", 0.95)):
        values = _losses(tmp_path / "run", term)
        assert sum(values[-3:]) / 3 < factor * sum(values[:3]) / 3, (term, values)
    assert (tmp_path / "run" / "best.safetensors").is_file() and (tmp_path / "run" / "config.yaml").is_file()


def test_killed_run_resumes_to_the_same_state(shared_data, tmp_path):
    data = _mini_camvid(shared_data, tmp_path / "data", n=4)
    # uninterrupted reference
    train(_cfg(data, tmp_path / "ref", 6))
    reference = load_training_checkpoint(tmp_path / "ref" / "last.pt")
    # the same run in a subprocess, SIGKILLed once a mid-run checkpoint exists
    victim = tmp_path / "victim"
    cmd = [sys.executable, "-m", "bevanet_core.cli.train", "--set"] + [
        o for o in (f"data.root={data}", "data.train_list=train.lst", "data.val_list=val.lst", "data.base_size=128",
                    "data.crop_size=[128,96]", "data.workers=0", "optim.batch_size=2", "optim.iterations=6",
                    f"run.out_dir={victim}", "run.log_every=1", "run.checkpoint_every=1", "run.val_every=0",
                    "run.threads=1")]
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
    result = train(_cfg(data, victim, 6), resume="auto")
    assert result["iteration"] == 6
    resumed = load_training_checkpoint(victim / "last.pt")
    for key, value in reference["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
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
    batches = [(torch.randn(2, 3, 64, 64, generator=g), torch.randint(0, 11, (2, 64, 64), generator=g),
                (torch.rand(2, 64, 64, generator=g) > 0.8).float()) for _ in range(2)]
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
    from bevanet_core.training.engine import build_criterion
    objective = build_criterion(load_config(None, []))
    target = torch.randint(0, 3, (2, 64, 64))
    edge = torch.zeros(2, 64, 64)
    for name, terms in (("bisenetv2", {"main", "aux2", "aux3", "aux4", "aux5_4"}),
                        ("stdc1", {"main", "aux16", "aux32", "detail_bce", "detail_dice"}),
                        ("pidnet_s", {"aux", "main", "boundary", "guided"}),
                        ("bssnet_t", {"main", "border", "boundary_ce", "reconstruction", "aux3", "aux4"}),
                        ("van_tiny_lightham", {"main"})):
        out = objective(build_model(name, num_classes=3, aux_heads=True)(torch.randn(2, 3, 64, 64)), target, edge)
        assert terms <= set(out) and torch.isfinite(out["loss"]), name
        out["loss"].backward()
    with pytest.raises(TypeError, match="no training objective for model outputs of type Tensor"):
        objective(torch.zeros(1, 3, 8, 8), target, edge)


# each family once, and with it one of the authors' optimiser settings (STDC: heads x10 and a
# geometric warm-up with colour jitter; BSSNet: photometric distortion; Light-Ham: AdamW)
FAMILY_RECIPES = {
    "bisenetv2": {"optim.warmup_iters": 1, "optim.warmup_ratio": 0.1, "optim.min_lr": 1e-4},
    "stdc1": {"optim.lr_mult": {"": 10.0, "cp.backbone": 1.0}, "optim.warmup_iters": 1,
              "optim.warmup_mode": "exp", "data.photometric": "jitter"},
    "bssnet_t": {"data.photometric": "distortion"},
    "van_tiny_lightham": {"optim.name": "adamw", "optim.lr": 6e-5, "optim.no_decay": ["norm"]},
}


@pytest.mark.parametrize("variant", list(FAMILY_RECIPES))
def test_other_families_train_with_the_same_engine(shared_data, tmp_path, variant):
    data = _mini_camvid(shared_data, tmp_path / "data")
    result = train(_cfg(data, tmp_path / "run", 2, **{"model.variant": variant, "run.checkpoint_every": 0,
                                                      **FAMILY_RECIPES[variant]}))
    losses = _losses(tmp_path / "run")  # logged every iteration
    assert result["iteration"] == 2 and len(losses) == 2, losses
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_diverging_run_stops_with_a_named_error_and_a_hint(shared_data, tmp_path):
    data = _mini_camvid(shared_data, tmp_path / "data")
    cfg = _cfg(data, tmp_path / "run", 6, **{"model.variant": "pidnet_s", "optim.lr": 1e12,
                                             "run.checkpoint_every": 0, "run.precision": "bf16"})
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at iteration \d; with "
                                                 r"run.precision=bf16 try fp32"):
        train(cfg)


def test_cpu_bf16_channels_last_is_refused_where_weight_gradients_would_be_wrong(shared_data, tmp_path):
    """VAN's dilated depthwise convs get wrong bf16 weight gradients from the CPU's channels-last
    kernel (test_van.py); the run stops before its first step and names the combination."""
    data = _mini_camvid(shared_data, tmp_path / "data")
    cfg = _cfg(data, tmp_path / "run", 2, **{"model.variant": "van_tiny_lightham", "run.precision": "bf16",
                                             "run.channels_last": True, "run.checkpoint_every": 0})
    with pytest.raises(ValueError, match=r"run.channels_last=true with run.precision=bf16 on the CPU: 13 "
                                         r"dilated depthwise convs \(first: backbone.block1.0.attn"):
        train(cfg)
    assert not (tmp_path / "run" / "last.pt").exists()
    # networks without dilated depthwise convs, and fp32, still train channels-last
    train(_cfg(data, tmp_path / "run2", 1, **{"model.variant": "pidnet_s", "run.precision": "bf16",
                                              "run.channels_last": True, "run.checkpoint_every": 0}))
