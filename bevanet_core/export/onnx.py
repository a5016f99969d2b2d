"""Static-shape ONNX export of the inference network (aux heads removed), with metadata.

Exporter: torch 2.13 has two. The default here is the TorchScript exporter (`dynamo=False`):
it needs nothing beyond torch and onnx, exports BEVANet-S in ~6 s against ~50 s for the
torch.export-based one on this 2-core CPU, and its plain static graph matches PyTorch to
~1e-5 in ONNX Runtime and parses in TensorRT. PyTorch marks it deprecated, so
`exporter="dynamo"` (needs `onnxscript`; opset 18, as it cannot down-convert this graph to 17)
is available and gives the same parity.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from ..checkpoint import ModelInfo
from ..paths import atomic_write
from .metadata import (
    METADATA_KEY,
    ArtifactMetadata,
    PathLike,
    model_hash,
    now_iso,
    tool_versions,
    write_sidecar,
)
from .sizes import check_exportable

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def inference_model(model: nn.Module, fold_bn: bool = False) -> nn.Module:
    """A float32 CPU eval copy without training heads, optionally with BatchNorm folded."""
    model = copy.deepcopy(model).float().cpu().eval()
    if getattr(model, "aux_heads", False) and hasattr(model, "without_aux_heads"):
        model.without_aux_heads()
    if fold_bn:
        from ..deploy import fold_batchnorm

        model = fold_batchnorm(model, inplace=True)
    return model


def onnx_parity(model: nn.Module, path: PathLike, x: torch.Tensor, threads: int = 1):
    """(ONNX Runtime output, PyTorch output) of the exported `path` and of `model`'s inference
    copy on the same input `x`, as numpy arrays: what an export check compares."""
    import onnxruntime as ort

    with torch.no_grad():
        expected = inference_model(model)(x.float().cpu()).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.float().cpu().numpy()})[0]
    return got, expected


def _check_size(input_size: Union[str, Sequence[int]]) -> tuple[int, int]:
    from ..imaging.geometry import parse_size

    return parse_size(input_size, "input_size", 8)


def export_onnx(
    model: nn.Module,
    info: ModelInfo,
    path: PathLike,
    input_size: Optional[Union[str, Sequence[int]]] = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = False,
    exporter: str = "torchscript",
) -> ArtifactMetadata:
    """Exports `model` to `path` (atomically) and writes `path`.json beside it.

    input_size: network (W, H), multiples of 8; None = `info.input_size`. The graph has a
    static H x W and batch `batch` (or a dynamic batch axis with `dynamic_batch`). ONNX Runtime
    folds BatchNorm itself, so `fold_bn` mostly matters for other consumers.
    """
    if input_size is None:
        if info.input_size is None:
            raise ValueError(
                "export_onnx: no input_size given and the model's ModelInfo has none; pass input_size=(W, H)"
            )
        input_size = info.input_size
    width, height = _check_size(input_size)
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if opset < 17:
        raise ValueError(f"opset must be 17 or newer (LayerNormalization), got {opset}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output path must end in .onnx, got {path}")

    if exporter == "dynamo" and opset < 18:
        # torch 2.13's dynamo exporter emits opset 18 and cannot down-convert this graph to 17
        log.info("exporter='dynamo' uses opset 18 (asked for %d)", opset)
        opset = 18
    net = inference_model(model)
    check_exportable(net, width, height)  # a one-line refusal, not a SymbolicValueError
    digest = model_hash(net)  # of the weights as trained, before any folding
    if fold_bn:
        from ..deploy import fold_batchnorm

        net = fold_batchnorm(net, inplace=True)
    example = torch.zeros(batch, 3, height, width)
    meta = ArtifactMetadata(
        format="onnx",
        model_info=_info_dict(info, (width, height)),
        input_size=(width, height),
        batch=batch,
        dynamic_batch=dynamic_batch,
        precision="fp32",
        model_hash=digest,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        output_stride=int(getattr(net, "output_stride", 8)),
        bn_folded=fold_bn,
        exporter=exporter,
        opset=opset,
        versions=tool_versions(),
        created=now_iso(),
    )

    def write(tmp: str) -> None:
        _torch_export(net, example, tmp, opset, dynamic_batch, exporter)
        _finish(tmp, meta)

    atomic_write(path, write)
    write_sidecar(path, meta)
    log.info(
        "exported %s (%dx%d, batch %s) to %s",
        info.variant,
        width,
        height,
        "dynamic" if dynamic_batch else batch,
        path,
    )
    return meta


def _info_dict(info: ModelInfo, size: tuple[int, int]) -> dict:
    import dataclasses

    data = dataclasses.asdict(info)
    data["input_size"] = list(size)
    return data


def _torch_export(
    net: nn.Module, example: torch.Tensor, out: str, opset: int, dynamic_batch: bool, exporter: str
) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice is expected
        if exporter == "torchscript":
            torch.onnx.export(
                net,
                (example,),
                out,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
            )
            return
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise ValueError(
                "exporter='dynamo' needs the 'onnxscript' package "
                "(pip install onnxscript), or use exporter='torchscript'"
            ) from None
        shapes = None
        if dynamic_batch:
            shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},)
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
        )
        program.save(out, external_data=False)


def _finish(tmp: str, meta: ArtifactMetadata) -> None:
    """Checks the exported graph and stores the metadata in its `metadata_props`."""
    import onnx

    proto = onnx.load(tmp)
    onnx.checker.check_model(proto)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json(with_file_hash=False)
    proto.producer_name = "bevanet_core"
    onnx.save(proto, tmp)
