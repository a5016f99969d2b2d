"""Static check of the TensorRT Python API the code uses, against TensorRT 10.x and 11.x.

TensorRT cannot be installed here, so this does not run it. It reads the names each version's
pybind11 bindings register (test/data/tensorrt_api/, written by scripts/tensorrt_api_names.py
from the `tensorrt-cu12-bindings` 10.x and `tensorrt-cu13-bindings` 11.x wheels) and checks that
every TensorRT attribute, class, enum member and method the code touches exists in both, and
that none of the APIs NVIDIA's 10.x -> 11.x migration guide lists as removed (weak-typing
builder flags, int8 calibrators) is used. What it cannot show: argument types and counts,
whether a build succeeds, and what the engines compute; test/test_tensorrt.py does that where
tensorrt imports and a GPU is present.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "test" / "data" / "tensorrt_api"
VERSIONS = {"10": "tensorrt-10.16.1.11.txt", "11": "tensorrt-11.4.0.106.txt"}
# removed in TensorRT 11 (migration guide, "Removed Python APIs"): precision-enabling builder
# flags, the calibrator interface, and the platform precision queries
REMOVED_FLAGS = {
    "FP16", "INT8", "FP8", "BF16", "INT4", "FP4",
    "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
}  # fmt: skip
REMOVED_NAMES = {
    "int8_calibrator", "IInt8Calibrator", "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2",
    "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator", "set_calibration_profile",
    "get_calibration_profile", "platform_has_fast_fp16", "platform_has_fast_int8",
    "algorithm_selector", "IAlgorithmSelector",
}  # fmt: skip


def _names(version: str) -> set:
    return set((DATA / VERSIONS[version]).read_text().split())


def _present(name: str, names: set) -> bool:
    # the linker may keep a short string only as the tail of a longer one ('Logger' in 'ILogger')
    return name in names or any(n.endswith(name) for n in names)


def _key(node: ast.AST):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return "self." + node.attr
    return None


def _derived(node: ast.AST, tracked: set) -> bool:
    """Whether the value of `node` comes from the tensorrt module (through calls, attributes,
    subscripts and variables assigned from such values)."""
    while True:
        if _key(node) in tracked:
            return True
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        else:
            return False


def used_tensorrt_api(path: Path) -> tuple[set, set]:
    """(attribute names used on TensorRT objects, BuilderFlag members used) in one file."""
    tree = ast.parse(path.read_text())
    tracked = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tracked |= {a.asname or a.name for a in node.names if a.name == "tensorrt"}
    for node in ast.walk(tree):  # trt = _require_tensorrt() / pytest.importorskip("tensorrt")
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            named = isinstance(call.func, ast.Name) and call.func.id == "_require_tensorrt"
            skip = any(isinstance(a, ast.Constant) and a.value == "tensorrt" for a in call.args)
            if named or skip:
                tracked |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for _ in range(5):  # propagate through assignments until nothing changes
        before = len(tracked)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _derived(node.value, tracked):
                tracked |= {k for k in map(_key, node.targets) if k}
        if len(tracked) == before:
            break
    used, flags = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _derived(node.value, tracked):
            if not node.attr.startswith("__"):
                used.add(node.attr)
            if isinstance(node.value, ast.Attribute) and node.value.attr == "BuilderFlag":
                flags.add(node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("hasattr", "getattr") and len(node.args) > 1:
                if _derived(node.args[0], tracked) and isinstance(node.args[1], ast.Constant):
                    used.add(node.args[1].value)
    return used, flags


def _tensorrt_files() -> list:
    # files that call into TensorRT (not those that only test whether it imports)
    files = list((REPO / "bevanet_core").rglob("*.py")) + list((REPO / "test").glob("*.py"))
    return sorted(p for p in files if "tensorrt" in p.read_text() and used_tensorrt_api(p)[0])


def test_name_lists_show_the_11x_removals():
    v10, v11 = _names("10"), _names("11")
    assert len(v10) > 4000 and len(v11) > 4000
    for name in ("FP16", "int8_calibrator", "IInt8EntropyCalibrator2", "set_calibration_profile"):
        assert name in v10 and name not in v11, name
    assert "STRONGLY_TYPED" in v10 and "STRONGLY_TYPED" in v11


def test_tensorrt_files_are_found():
    names = {p.name for p in _tensorrt_files()}
    assert {"tensorrt.py", "tensorrt_backend.py"} <= names


@pytest.mark.parametrize("path", _tensorrt_files(), ids=lambda p: p.name)
def test_every_tensorrt_name_exists_in_10x_and_11x(path):
    used, flags = used_tensorrt_api(path)
    for version in VERSIONS:
        names = _names(version)
        missing = sorted(n for n in used if not _present(n, names))
        assert not missing, f"{path.name} uses names TensorRT {version}.x lacks: {missing}"
    assert not (flags & REMOVED_FLAGS), f"{path.name} uses weak-typing flags {flags}"
    assert not (used & REMOVED_NAMES), f"{path.name} uses removed APIs {used & REMOVED_NAMES}"


def test_builder_is_strongly_typed_and_sets_no_flag():
    path = REPO / "bevanet_core" / "export" / "tensorrt.py"
    used, flags = used_tensorrt_api(path)
    assert "STRONGLY_TYPED" in used and "create_network" in used
    assert "set_flag" not in used and not flags


def test_the_scan_sees_a_weak_typing_build(tmp_path):
    """The checker itself: a TensorRT 10-style weak-typing build is caught."""
    src = tmp_path / "old.py"
    src.write_text(
        "import tensorrt as trt\n"
        "builder = trt.Builder(trt.Logger(trt.Logger.WARNING))\n"
        "config = builder.create_builder_config()\n"
        "config.set_flag(trt.BuilderFlag.FP16)\n"
        "config.int8_calibrator = None\n"
    )
    used, flags = used_tensorrt_api(src)
    assert flags == {"FP16"} and "int8_calibrator" in used
    assert not _present("int8_calibrator", _names("11"))


def test_engine_precision_must_match_the_onnx(tmp_path):
    from bevanet_core.export.tensorrt import _check_precision

    onnx = tmp_path / "m.onnx"
    assert _check_precision(onnx, "int8", None) == "int8"
    assert _check_precision(onnx, "fp16", "fp16") == "fp16"
    with pytest.raises(ValueError, match="strongly typed.*--precision int8 --calib-images"):
        _check_precision(onnx, "fp32", "int8")
    with pytest.raises(ValueError, match="must be one of"):
        _check_precision(onnx, "fp32", "bf16")
