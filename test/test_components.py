"""What the component container does with a load request before any ROS: plugin names, remap
rules, log levels and extra arguments (the container itself: test_ros2_cli.py)."""

from __future__ import annotations

import pytest

from bevanet_core.serving.components import (
    ComponentLoadError,
    check_extra_arguments,
    check_plugin,
    node_arguments,
)

KNOWN = ["bevanet_ros::SegmentationNode", "bevanet_ros::LifecycleSegmentationNode"]


def test_a_known_plugin_passes_and_others_are_named():
    check_plugin("bevanet_ros", "bevanet_ros::SegmentationNode", KNOWN)
    with pytest.raises(ComponentLoadError, match=r"no component 'bevanet_ros::Nope'.*loads bevanet_ros::Segm"):
        check_plugin("bevanet_ros", "bevanet_ros::Nope", KNOWN)
    with pytest.raises(ComponentLoadError, match=r"package 'image_proc'.*rclcpp_components"):
        check_plugin("image_proc", "image_proc::RectifyNode", KNOWN)


def test_remaps_and_log_level_become_ros_arguments():
    assert node_arguments([], 0) == ["--ros-args"]
    assert node_arguments(["image:=/cam/image_raw"], 10) == [
        "--ros-args",
        "-r",
        "image:=/cam/image_raw",
        "--log-level",
        "debug",
    ]
    with pytest.raises(ComponentLoadError, match="FROM:=TO"):
        node_arguments(["image=/cam"], 0)
    with pytest.raises(ComponentLoadError, match="log level 7"):
        node_arguments([], 7)


def test_intra_process_is_accepted_with_a_warning_and_unknown_extras_are_refused():
    assert check_extra_arguments([("use_intra_process_comms", False)]) == []
    assert "ignored" in check_extra_arguments([("use_intra_process_comms", True)])[0]
    with pytest.raises(ComponentLoadError, match="unknown extra argument 'threads'"):
        check_extra_arguments([("threads", 4)])
