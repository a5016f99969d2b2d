"""backend='auto': the fastest backend for this machine, model, input size and precision, picked
by a short measured probe and cached.

Which backend is fastest depends on the CPU (AMX, AVX-512, AVX2), on how many threads are set
and on what else runs on the machine, so it is measured rather than guessed: every backend that
is installed, runs on the device and supports the precision is built, warmed up once and timed
for a few inferences on the configured input size and threads; the one with the lowest median
wins and the others are closed. The timings and the choice are cached as JSON under
`<cache_dir>/auto/`, keyed by the machine (CPU or GPU name, cores usable by this process, library
versions), the model's hash, input size, precision and threads; a later start with the same key
builds only the winner. Delete the file, or set BEVANET_AUTO_REPROBE=1, to measure again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch

from ..hardware import cpu_info
from ..paths import cache_dir
from .backend import Backend

log = logging.getLogger(__name__)

PROBE_RUNS = 7
# a pipeline must be this much faster than a full-precision one to be preferred to it
PROBE_MARGIN = 0.10
# which backends can run each precision (the device and installed packages narrow it further)
PRECISION_BACKENDS = {
    "auto": ("torch", "onnxruntime", "openvino", "tensorrt"),
    "fp32": ("torch", "onnxruntime", "openvino", "tensorrt"),
    "bf16": ("torch", "openvino"),
    "fp16": ("torch", "onnxruntime", "tensorrt"),
    "int8": ("onnxruntime", "openvino", "tensorrt"),
}


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def candidate_backends(cfg, device: torch.device) -> tuple[list[str], dict[str, str]]:
    """(backends worth probing, {backend: why it is left out})."""
    suffix = Path(cfg.weights).suffix.lower() if cfg.weights else ""
    skipped: dict[str, str] = {}
    chosen: list[str] = []
    for name in ("torch", "onnxruntime", "openvino", "tensorrt"):
        if name not in PRECISION_BACKENDS[cfg.precision]:
            skipped[name] = f"no {cfg.precision}"
        elif suffix in (".engine", ".plan", ".trt") and name != "tensorrt":
            skipped[name] = "weights are a TensorRT engine"
        elif suffix == ".onnx" and name == "torch":
            skipped[name] = "weights are an ONNX model"
        elif suffix == ".xml" and name != "openvino":
            skipped[name] = "weights are an OpenVINO IR"
        elif name == "openvino" and device.type != "cpu":
            skipped[name] = "CPU only"
        elif name == "tensorrt" and device.type != "cuda":
            skipped[name] = "needs CUDA"
        elif name == "torch" and device.type == "cpu" and cfg.precision == "fp16":
            skipped[name] = "no fp16 on the CPU"
        elif name in ("onnxruntime", "openvino", "tensorrt") and not _importable(name):
            skipped[name] = "not installed"
        elif name == "onnxruntime" and device.type == "cuda" and not _ort_has_cuda():
            skipped[name] = "onnxruntime has no CUDA provider"
        else:
            chosen.append(name)
    return chosen, skipped


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def machine_key(device: torch.device, threads: Optional[int]) -> dict[str, Any]:
    """What a probe's result depends on besides the model."""
    key: dict[str, Any] = {
        "cpu": cpu_info().describe(),  # the model and its SIMD flags (AVX2, AVX-512, AMX)
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "device": str(device),
        "threads": threads,
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    for pkg in ("onnxruntime", "openvino", "tensorrt"):
        try:
            from importlib.metadata import version

            key[pkg] = version(pkg)
        except Exception:
            pass
    return key


def _model_digest(cfg, model) -> str:
    if model is not None:
        from ..export.metadata import model_hash

        return model_hash(model)
    from ..checkpoint import file_sha256

    return file_sha256(cfg.weights)


def probe(backends: dict[str, Backend], sizes: dict[str, tuple[int, int]], runs: int) -> dict[str, float]:
    """Median ms of one batch-1 inference per backend, timed in interleaved rounds so that a
    change in the machine's load hits every backend alike; two warm-up calls each first."""
    inputs = {name: torch.zeros(1, 3, sizes[name][1], sizes[name][0]) for name in backends}
    for name, backend in backends.items():
        for _ in range(2):  # first-call allocations, kernel selection
            backend.infer(inputs[name])
        backend.synchronize()
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(runs):
        for name, backend in backends.items():
            t0 = time.perf_counter()
            backend.infer(inputs[name])
            backend.synchronize()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def label(name: str, precision: str) -> str:
    """How a pipeline is named in the probe's timings and the log: 'openvino int8'."""
    return f"{name} {precision}"


def candidate_pipelines(cfg, device: torch.device) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """((backend, precision) pairs worth probing, {pipeline: why it is left out}).

    A fixed precision gives that precision's backends. Precision 'auto' (a checkpoint, its
    precision not set) gives every fp32 backend and, on the CPU, the int8 ones too, calibrated
    and checked on the shipped frames (runtime/int8_guard.py)."""
    import dataclasses

    from .int8_guard import calibration_folder, check_files

    if cfg.precision != "auto":
        names, skipped = candidate_backends(cfg, device)
        return [(n, cfg.precision) for n in names], skipped
    names, skipped = candidate_backends(dataclasses.replace(cfg, precision="fp32"), device)
    pairs = [(n, "fp32") for n in names]
    int8_names, int8_skipped = candidate_backends(dataclasses.replace(cfg, precision="int8"), device)
    for name, why in int8_skipped.items():
        if name != "torch":  # torch has no int8: not a choice left out
            skipped[label(name, "int8")] = why
    if device.type != "cpu":
        for name in int8_names:
            skipped[label(name, "int8")] = "int8 out of the box is for the CPU; ask for precision int8"
    elif calibration_folder(cfg) is None or not check_files():
        for name in int8_names:
            skipped[label(name, "int8")] = "no calibration and check frames (bevanet_core/weights/int8_frames)"
    else:
        pairs += [(n, "int8") for n in int8_names]
    return pairs, skipped


def pick(timings: dict[str, float], margin: float = PROBE_MARGIN) -> str:
    """The pipeline to keep: the fastest, except that a full-precision pipeline within `margin`
    of it is preferred (int8 has to be clearly faster to be worth its rounding), and among those
    the fastest. Only a clear difference decides, so noise on a busy machine cannot flip it."""
    best = min(timings.values())
    near = [k for k, v in timings.items() if v <= best * (1.0 + margin)]
    full = [k for k in near if not k.endswith(" int8")]
    return min(full or near, key=timings.get)


def select_backend(
    cfg,
    device: torch.device,
    model,
    info,
    build: Callable[[str, str, Any, Any], tuple[Backend, Any]],
    size_of: Callable[[Backend, Any], tuple[int, int]],
    runs: int = PROBE_RUNS,
) -> tuple[Backend, Any, dict[str, Any]]:
    """(backend, ModelInfo, choice record) for backend='auto'.

    build(name, precision, model, info) makes one backend at one precision; size_of(backend,
    info) is the network input size it runs at. The record holds the choice (backend and
    precision), the reason, the probe's timings, the int8 guard's agreements and how long the
    start took.
    """
    started = time.perf_counter()
    pairs, skipped = candidate_pipelines(cfg, device)
    if not pairs:
        raise ValueError(
            f"backend 'auto': no installed backend runs precision {cfg.precision!r} on "
            f"{device} ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})"
        )
    suffix = Path(cfg.weights).suffix.lower() if cfg.weights else ""
    if model is None and suffix not in (".onnx", ".xml", ".engine", ".plan", ".trt"):
        from .backend import load_checkpoint  # once, not once per candidate

        model, info = load_checkpoint(cfg.weights, cfg.variant, cfg.allow_nonfinite)
    labels = [label(n, p) for n, p in pairs]
    key = {
        "machine": machine_key(device, cfg.num_threads),
        "model": _model_digest(cfg, model),
        # the size it will run at: the configured one, else the one in the weights' metadata
        "input_size": list(cfg.input_size or getattr(info, "input_size", None) or []) or None,
        "precision": cfg.precision,
        "candidates": labels,
    }
    if any(p == "int8" for _, p in pairs):
        from .int8_guard import MAX_CONFIDENCE_GAP, MIN_AGREEMENT, frames_digest

        key["int8"] = {
            "frames": frames_digest(cfg),
            "min_agreement": MIN_AGREEMENT,
            "max_confidence_gap": MAX_CONFIDENCE_GAP,
            "resize": cfg.resize,
        }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir(cfg.cache_dir) / "auto"
    cache_file = cache / f"probe-{digest}.json"
    record = _read_record(cache_file)
    if record is not None and label(record.get("backend", ""), record.get("precision", cfg.precision)) in labels:
        precision = record.get("precision", cfg.precision)
        try:
            backend, cached_info = build(record["backend"], precision, model, info)
        except Exception as exc:  # noqa: BLE001 - the cached choice cannot serve this run
            # (e.g. the same weights at an input size its ONNX export does not support): probe
            log.info(
                "backend auto: cached choice %s cannot be built (%s: %s); probing again",
                label(record["backend"], precision),
                type(exc).__name__,
                str(exc).splitlines()[0][:200],
            )
        else:
            record = {**record, "precision": precision, "cached": str(cache_file)}
            record["start_s"] = time.perf_counter() - started
            log.info("backend auto: %s", describe(record))
            return backend, cached_info, record

    if len(pairs) == 1:
        name, precision = pairs[0]
        backend, info = build(name, precision, model, info)
        record = {
            "backend": name,
            "precision": precision,
            "probe_ms": {},
            "skipped": skipped,
            "reason": "only candidate",
            "start_s": time.perf_counter() - started,
        }
        log.info("backend auto: %s", describe(record))
        return backend, info, record

    built: dict[str, tuple[Backend, Any]] = {}
    failures: dict[str, str] = {}
    for name, precision in pairs:
        try:
            built[label(name, precision)] = build(name, precision, model, info)
        except Exception as exc:  # noqa: BLE001 - e.g. no bf16 CPU, an op the ONNX exporter
            # lacks: that pipeline cannot serve, the others can
            failures[label(name, precision)] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.debug("backend auto: %s %s cannot be built", name, precision, exc_info=True)
    if not built:
        raise ValueError(
            "backend 'auto': every candidate failed to build: " + "; ".join(f"{k}: {v}" for k, v in failures.items())
        )
    # the guard checks the int8 that auto adds; an int8 file or an asked int8 is the user's choice
    guard = _guard_int8(built, info, size_of, failures, cfg.resize) if cfg.precision == "auto" else {}
    if not built:
        raise ValueError(
            "backend 'auto': no candidate can serve: " + "; ".join(f"{k}: {v}" for k, v in failures.items())
        )
    timings = probe(
        {k: b for k, (b, _) in built.items()},
        {k: size_of(b, i) for k, (b, i) in built.items()},
        runs,
    )
    chosen = pick(timings)
    for other, (backend, _) in built.items():
        if other != chosen:
            backend.close()
    backend, info = built[chosen]
    name, precision = chosen.split(" ", 1)
    record = {
        "backend": name,
        "precision": precision,
        "probe_ms": timings,
        "guard": guard,
        "skipped": {**skipped, **failures},
        "reason": f"lowest median of {runs} timed inferences, full precision preferred within {PROBE_MARGIN:.0%}",
        "key": key,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "start_s": time.perf_counter() - started,
    }
    _write_record(cache_file, record)
    log.info("backend auto: %s", describe(record))
    return backend, info, record


def _guard_int8(built: dict, info, size_of, failures: dict[str, str], resize: str) -> dict[str, float]:
    """Checks every built int8 pipeline against the fp32 reference (PyTorch where built, else
    the first fp32 one) on the shipped check frames; one below MIN_AGREEMENT is closed and moved
    to `failures` with its figure, and so is one whose confidence strays more than
    MAX_CONFIDENCE_GAP from the reference's. Returns {pipeline: agreement}."""
    from .int8_guard import MAX_CONFIDENCE_GAP, MIN_AGREEMENT, check_inputs, compare

    quantized = [k for k in built if k.endswith(" int8")]
    if not quantized:
        return {}
    full = [k for k in built if not k.endswith(" int8")]
    reference = label("torch", "fp32") if label("torch", "fp32") in built else (full[0] if full else None)
    guard: dict[str, float] = {}
    for k in quantized:
        backend, binfo = built[k]
        if reference is None:
            failures[k] = "no fp32 pipeline to check it against"
        else:
            x = check_inputs(binfo, size_of(backend, binfo), resize)
            guard[k], gap = compare(built[reference][0], backend, x, getattr(info, "variant", None))
            if guard[k] >= MIN_AGREEMENT and gap <= MAX_CONFIDENCE_GAP:
                continue
            if guard[k] < MIN_AGREEMENT:
                failures[k] = (
                    f"agrees with {reference} on {guard[k]:.2%} of the check frames' pixels, "
                    f"below the {MIN_AGREEMENT:.0%} guard"
                )
            else:
                failures[k] = (
                    f"its confidence differs from {reference}'s by {gap:.3f} on average on the check frames, "
                    f"past the {MAX_CONFIDENCE_GAP} guard (the calibration would not hold)"
                )
        built.pop(k)[0].close()
    return guard


def describe(record: dict[str, Any]) -> str:
    """One log line: the choice, why, and the probe's timings."""
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(record["probe_ms"].items(), key=lambda kv: kv[1]))
    chosen = record["backend"] + (f" {record['precision']}" if record.get("precision") else "")
    text = f"chose {chosen} ({record['reason']}"
    text += f": {timings})" if timings else ")"
    if record.get("guard"):
        text += "; int8 agreement with fp32 on the check frames: " + ", ".join(
            f"{k} {v:.2%}" for k, v in record["guard"].items()
        )
    if record.get("cached"):
        text += f" [probe cached in {record['cached']}]"
    if record.get("skipped"):
        text += "; not probed: " + ", ".join(f"{k} ({v})" for k, v in record["skipped"].items())
    if record.get("start_s") is not None:
        text += f"; start took {record['start_s']:.1f} s"
    return text


def _read_record(path: Path) -> Optional[dict[str, Any]]:
    if os.environ.get("BEVANET_AUTO_REPROBE") == "1" or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    from ..paths import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record, indent=2, default=str)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as exc:  # a read-only cache only costs a probe at the next start
        log.warning("backend auto: cannot cache the probe in %s: %s", path, exc)
