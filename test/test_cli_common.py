"""Command-line pieces shared by the tools: backend from the weights file, one-line messages
for missing extras."""

from __future__ import annotations

import pytest

from bevanet_core.cli.common import backend_for_weights, extras_guard, missing_extra_line


@pytest.mark.parametrize(
    "weights, backend, expected",
    [
        ("m.onnx", "torch", "onnxruntime"),
        ("M.ONNX", "torch", "onnxruntime"),
        ("m.engine", "torch", "tensorrt"),
        ("m.plan", "torch", "tensorrt"),
        ("m.onnx", "openvino", "openvino"),  # an explicit choice that can run the file stays
        ("m.safetensors", "torch", "torch"),
        (None, "torch", "torch"),
    ],
)
def test_backend_for_weights(weights, backend, expected):
    assert backend_for_weights(weights, backend) == expected


def test_a_missing_extra_is_one_line_naming_it(capsys):
    @extras_guard("bevanet-x")
    def main() -> int:
        import onnxscript_not_there  # noqa: F401

        return 0

    @extras_guard("bevanet-x")
    def main_onnx() -> int:
        raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")

    with pytest.raises(ModuleNotFoundError):  # not an optional dependency: a real bug, raised
        main()
    assert main_onnx() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [missing_extra_line("bevanet-x", "onnxruntime")]
    assert "pip install -e '.[onnx]'" in err[0]


@pytest.mark.parametrize("verbose,shown", [(False, ["warned"]), (True, ["told", "warned"])])
def test_tools_log_plain_lines_warnings_only_unless_verbose(verbose, shown):
    import subprocess
    import sys

    code = (
        "import logging; from bevanet_core.cli.common import configure_logging; "
        f"configure_logging({verbose}); log = logging.getLogger('bevanet_core.x'); "
        "log.info('told'); log.warning('warned')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert done.stderr.splitlines() == shown
