"""Launch files: static checks everywhere; the launch descriptions themselves where `launch` and
`launch_ros` import (they cannot be installed on the CI box, so those tests skip there). The
variant -> parameters logic they call is tested in test_serving_params.py."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from bevanet_core.serving import launch_plan, rviz_config

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = ("segmentation.launch.py", "bag_replay.launch.py")


def _tree(name: str) -> ast.Module:
    return ast.parse((REPO / "launch" / name).read_text(), filename=name)


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_files_are_plain_declarative_python(name):
    tree = _tree(name)
    imported = {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"launch", "launch_ros", "bevanet_ros", "bevanet_core"}, imported
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"eval", "exec", "__import__"}, calls
    assert "subprocess" not in (REPO / "launch" / name).read_text()
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_segmentation_launch_uses_find_package_share_and_every_argument_has_a_description():
    text = (REPO / "launch" / "segmentation.launch.py").read_text()
    assert "FindPackageShare" in text and "ExecuteProcess" not in text
    names = [a[0] for a in launch_plan.LAUNCH_ARGUMENTS]
    for required in (
        "variant",
        "backend",
        "weights",
        "engine",
        "camera_topics",
        "namespace",
        "use_sim_time",
        "rviz",
    ):
        assert required in names
    for name, default, description in launch_plan.LAUNCH_ARGUMENTS:
        assert isinstance(default, str) and len(description) > 10, name


def test_bag_replay_arguments_have_descriptions():
    tree = _tree("bag_replay.launch.py")
    args = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS")
    values = ast.literal_eval(args.value)
    names = [v[0] for v in values]
    assert {"bag", "variant", "camera_topics", "rviz", "rate"} <= set(names)
    assert all(len(v[2]) > 10 for v in values)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_description_builds(name):
    pytest.importorskip("launch", reason="the ROS 2 `launch` package is not installed (not pip-installable)")
    pytest.importorskip("launch_ros", reason="`launch_ros` is not installed (not pip-installable)")
    from launch.actions import DeclareLaunchArgument

    description = _load(name).generate_launch_description()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert declared and all(d.description for d in declared)
    if name == "segmentation.launch.py":
        assert [d.name for d in declared] == [a[0] for a in launch_plan.LAUNCH_ARGUMENTS]
    else:  # the bag replay passes every node parameter on to segmentation.launch.py
        assert set(launch_plan.PARAM_ARGUMENTS) <= {d.name for d in declared}
        assert len(declared) == len({d.name for d in declared})


@pytest.mark.parametrize("variant, extra", [("bevanet_s", {}), ("bevanet", {"weights": "/w.safetensors"})])
def test_segmentation_launch_actions_per_variant(variant, extra, monkeypatch, tmp_path):
    pytest.importorskip("launch", reason="the ROS 2 `launch` package is not installed (not pip-installable)")
    pytest.importorskip("launch_ros", reason="`launch_ros` is not installed (not pip-installable)")
    from launch.actions import LogInfo
    from launch_ros.actions import Node

    from launch import LaunchContext

    module = _load("segmentation.launch.py")
    # resolve the package share to the source tree (same config/ layout as the install)
    monkeypatch.setattr(module.FindPackageShare, "perform", lambda self, context: str(REPO))
    monkeypatch.setenv("BEVANET_CACHE", str(tmp_path))  # where rviz:=true writes its view
    context = LaunchContext()
    args = dict(launch_plan.default_arguments(), variant=variant, rviz="true", namespace="perception", **extra)
    for key, value in args.items():
        context.launch_configurations[key] = value
    actions = module._launch_setup(context)
    nodes = [a for a in actions if isinstance(a, Node)]
    notes = [a for a in actions if isinstance(a, LogInfo)]
    view = tmp_path / "rviz" / "perception_segmentation.rviz"
    plan = launch_plan.plan_launch(args, str(REPO))
    assert view.read_text() == rviz_config.render(plan.settings, "perception", "segmentation")
    if module.package_installed("rviz2"):
        assert len(nodes) == 2 and not notes  # segmentation + rviz
    else:  # no rviz2 here: the node, and one note instead of RViz, naming the view it wrote
        assert len(nodes) == 1 and len(notes) == 1
        assert f"rviz2 -d {view}" in notes[0].msg[0].text


@pytest.mark.parametrize(
    "extra, kind",
    [({"composable": "true"}, "ComposableNodeContainer"), ({"container": "/ComponentManager"}, "LoadComposableNodes")],
)
def test_segmentation_launch_as_a_component(extra, kind, monkeypatch):
    pytest.importorskip("launch_ros", reason="`launch_ros` is not installed (not pip-installable)")
    from launch_ros.actions import ComposableNodeContainer, LoadComposableNodes

    from launch import LaunchContext

    module = _load("segmentation.launch.py")
    monkeypatch.setattr(module.FindPackageShare, "perform", lambda self, context: str(REPO))
    context = LaunchContext()
    for key, value in dict(launch_plan.default_arguments(), **extra).items():
        context.launch_configurations[key] = value
    actions = module._launch_setup(context)
    assert [type(a).__name__ for a in actions] == [kind]
    assert isinstance(actions[0], (ComposableNodeContainer, LoadComposableNodes))
