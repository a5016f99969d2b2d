"""A frame never climbs and loading never exports.

Following a frame from the node's subscription callback (`StreamSegmenter.put`, which the node
subscribes with) to the result the node publishes runs code of the serving layer and the layers
below it only (docs/development.md), none of the export layer, and imports nothing. A runtime
made from an ONNX model that exists loads no exporter; one made from a checkpoint asks the
export layer, once, while it is created: the export lands in the cache and is found there again.
Each case runs in a fresh interpreter, so `sys.modules` shows what it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_import_graph import LAYERS, all_modules, unit

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

REPO = Path(__file__).resolve().parents[1]
SERVING = next(i for i, layer in enumerate(LAYERS) if "serving" in layer)
EXPORTERS = {"bevanet_core.export.artifacts", "bevanet_core.export.onnx", "bevanet_core.export.precision"}

FOLLOW_A_FRAME = r"""
import json, sys, threading
from types import SimpleNamespace

import numpy as np

from bevanet_core.runtime import Segmenter, SegmenterConfig
from bevanet_core.serving.stream import StreamSegmenter

segmenter = Segmenter(SegmenterConfig(**json.loads(sys.argv[1])))
loaded = sorted(m for m in sys.modules if m.startswith("bevanet"))
ran = set()


def profile(frame, event, arg):
    if event == "call":
        name = frame.f_globals.get("__name__") or ""
        if name.startswith("bevanet"):
            ran.add(name)


published = []
done = threading.Event()
stream = StreamSegmenter(segmenter, ["/camera/image_raw"], on_result=lambda out: (published.append(out), done.set()))
threading.setprofile(profile)  # the worker thread
sys.setprofile(profile)  # the callback's thread
stream.start()
h, w = 96, 128
rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
header = SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id="camera")
msg = SimpleNamespace(encoding="rgb8", height=h, width=w, step=3 * w, data=rgb.tobytes(), is_bigendian=0, header=header)
stream.put(0, msg)
finished = done.wait(120)
sys.setprofile(None)
threading.setprofile(None)
stream.stop()
assert finished, "no result within 120 s"
print(json.dumps({
    "loaded": loaded,
    "ran": sorted(ran),
    "imported_during_frame": sorted(m for m in sys.modules if m.startswith("bevanet") and m not in loaded),
    "mask": list(published[0].result.mask.shape),
}))
"""


def follow_a_frame(config: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", FOLLOW_A_FRAME, json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_the_frame_path(report: dict) -> None:
    modules = all_modules()
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    ran = [m for m in report["ran"] if m in modules]
    assert {"bevanet_core.serving.stream", "bevanet_core.serving.decode", "bevanet_core.runtime.segmenter"} <= set(ran)
    above = [m for m in ran if level[unit(m, modules)] > SERVING]
    assert not above, f"a frame ran code above the serving layer: {above}"
    assert not [m for m in ran if m.startswith("bevanet_core.export")], ran
    assert report["imported_during_frame"] == []
    assert report["mask"] == [96, 128]


def test_a_frame_through_the_torch_runtime_stays_at_or_below_serving():
    report = follow_a_frame({"backend": "torch", "device": "cpu", "input_size": "128x96"})
    check_the_frame_path(report)
    assert not [m for m in report["loaded"] if m.startswith("bevanet_core.export")]


def test_loading_an_onnx_model_that_exists_never_exports_and_a_checkpoint_asks_once(tmp_path):
    cache = tmp_path / "cache"
    base = {"backend": "onnxruntime", "device": "cpu", "input_size": "128x96", "cache_dir": str(cache)}
    # the shipped checkpoint: the runtime asks the export layer (build_artifact) while it is created
    made = follow_a_frame(base)
    check_the_frame_path(made)
    assert EXPORTERS <= set(made["loaded"])
    exported = sorted((cache / "onnx").glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    # that export, given as the weights: loaded as it is, with no exporter in the process
    loaded = follow_a_frame(dict(base, weights=str(exported[0])))
    check_the_frame_path(loaded)
    assert not EXPORTERS & set(loaded["loaded"]), loaded["loaded"]
    # the checkpoint again: found in the cache, not exported a second time
    follow_a_frame(base)
    assert sorted((cache / "onnx").glob("*.onnx")) == exported and exported[0].stat().st_mtime_ns == stamp


def test_build_artifact_names_what_it_lacks():
    from types import SimpleNamespace

    from bevanet_core.export.artifacts import build_artifact

    cfg = SimpleNamespace(cache_dir=None, precision="fp32", max_batch=1)
    with pytest.raises(ValueError, match="artifact kind must be one of"):
        build_artifact("plan", cfg)
    with pytest.raises(ValueError, match="needs a source ONNX model or a model and its info"):
        build_artifact("onnx", cfg)
    with pytest.raises(ValueError, match="needs the source ONNX model"):
        build_artifact("engine", cfg)
