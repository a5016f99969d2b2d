"""The seeded hostile-input fuzz (scripts/fuzz_hostile.py) under a 4 GB address-space limit:
10,000 malformed Image / CompressedImage messages through the decoder, and a corpus of broken
bags (truncated, flipped bytes, missing or garbage metadata, empty storage, not a bag, hostile
frames) through bevanet-bag-eval. Zero crashes and zero tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from bevanet_core.checkpoint import ModelInfo, save_weights
from bevanet_core.models import build_model

REPO = Path(__file__).resolve().parents[1]


def test_fuzz_10000_messages_and_the_broken_bag_corpus_under_4g(tmp_path):
    torch.manual_seed(0)
    info = ModelInfo.default("bevanet_s", 11)
    info.input_size = (64, 64)
    weights = tmp_path / "seeded.safetensors"
    save_weights(build_model("bevanet_s", num_classes=11).eval(), weights, info)
    out = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/fuzz_hostile.py",
            "--messages",
            "10000",
            "--seed",
            "13",
            "--bags",
            str(tmp_path / "corpus"),
            "--weights",
            str(weights),
            "--as-limit-gb",
            "4",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    dec, bags = summary["decoder"], summary["bag_eval"]
    assert dec["messages"] == 10000 and dec["crashes"] == 0, dec["crash_examples"]
    assert dec["decoded"] > 0 and dec["refused"] > 0 and dec["decoded"] + dec["refused"] == 10000
    assert dec["refused_by_kind"]["too_large"] > 0  # the bombs were met, and refused
    assert bags["crashes"] == 0, bags["crash_examples"]
    assert all(b["exit"] in (0, 1, 2) and not b["traceback"] for b in bags["bags"])
    by_name = {b["bag"]: b for b in bags["bags"]}
    # truncated bags keep the frames before the fault; hostile frames are counted by reason
    cut = json.loads((tmp_path / "corpus" / "truncated_97.report.json").read_text())
    assert by_name["truncated_97"]["exit"] == 1 and cut["frames"] > 0 and cut["errors"]
    hostile = json.loads((tmp_path / "corpus" / "hostile_frames.report.json").read_text())
    assert hostile["frames"] == 2 and hostile["undecodable_reasons"] == {
        "odd_width": 1,
        "too_large": 1,
        "unknown_encoding": 1,
        "zero_size": 1,
    }
    comp = json.loads((tmp_path / "corpus" / "hostile_compressed.report.json").read_text())
    assert comp["frames"] == 1 and comp["undecodable_reasons"]["too_large"] == 2
