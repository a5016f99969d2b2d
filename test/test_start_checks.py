"""The environment and parameters are checked when a tool or the node starts, not at the first
frame: a malformed BEVANET_MAX_PIXELS refuses the start with one line naming it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bevanet_core.cli import predict
from bevanet_core.imaging.policy import MAX_PIXELS_ENV, set_max_pixels


@pytest.fixture(autouse=True)
def _cap_from_the_environment():
    """--max-pixels sets a process-wide cap: each test starts from the environment again."""
    set_max_pixels(None)
    yield
    set_max_pixels(None)


@pytest.mark.parametrize("value", ["64 megapixels", "-5", "nan"])
def test_malformed_max_pixels_refuses_a_tool_at_start(tmp_path, monkeypatch, capsys, value):
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(image), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and MAX_PIXELS_ENV in err[0] and repr(value) in err[0]
    assert not (tmp_path / "out").exists()
    if value == "nan":  # --max-pixels given on the command line overrides the environment
        assert (
            predict.main([str(image), "--out", str(tmp_path / "out"), "--max-pixels", "1000", "--input-size", "64x64"])
            == 0
        )


def test_malformed_max_pixels_refuses_the_node_settings(monkeypatch):
    from bevanet_core.serving.params import NodeSettings, ParameterError

    assert NodeSettings.from_values({}) is not None
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ParameterError, match=f"environment: {MAX_PIXELS_ENV} must be a number of pixels, got 'lots'"):
        NodeSettings.from_values({})
    monkeypatch.setenv(MAX_PIXELS_ENV, "2000000")
    assert NodeSettings.from_values({}) is not None


@pytest.mark.parametrize("tool", ["bag_eval", "demo"])
def test_malformed_max_pixels_refuses_the_bag_tools_at_start(tmp_path, monkeypatch, capsys, tool):
    import importlib

    main = importlib.import_module(f"bevanet_core.cli.{tool}").main
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    argv = (
        [str(tmp_path / "some.bag")]
        if tool == "bag_eval"
        else ["--bag", str(tmp_path / "some.bag"), "--out", str(tmp_path / "out")]
    )
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{MAX_PIXELS_ENV} must be a number of pixels, got 'lots'" in err[0]


def test_bag_eval_applies_its_max_pixels_option(tmp_path):
    from bevanet_core.cli import bag_eval
    from bevanet_core.imaging.policy import max_pixels

    with pytest.raises(SystemExit):  # the bag is missing: refused after the options are applied
        bag_eval.main([str(tmp_path / "missing.bag"), "--max-pixels", "1000"])
    assert max_pixels() == 1000
