"""The managed (lifecycle) node over real DDS: configure loads, activate serves, deactivate stops,
cleanup frees; reload parameters change only while unconfigured; a failed configure leaves
nothing half-built; transitions also work through the standard lifecycle services."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_ros_support import (  # noqa: E402
    WAIT_S,
    Probe,
    camera_frame,
    image_msg,
    params,
    publish_until,
    ros_context,
    seeded_weights,
    spinning,
    wait_for_subscribers,
)

from bevanet_ros.lifecycle_segmentation_node import LifecycleSegmentationNode  # noqa: E402

__all__ = ["ros_context", "seeded_weights"]


def state_of(node) -> str:
    return node._state_machine.current_state[1]


def count_subscribers(probe: Probe, topic: str, expected: int, timeout: float = 10.0) -> int:
    """Waits (DDS discovery) until `topic` has `expected` subscribers; returns the last count."""
    deadline = time.monotonic() + timeout
    n = probe.node.count_subscribers(topic)
    while n != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        n = probe.node.count_subscribers(topic)
    return n


def test_lifecycle_transitions(ros_context, seeded_weights):
    node = LifecycleSegmentationNode(
        "seg_lc",
        context=ros_context,
        parameter_overrides=params(seeded_weights, input_topics=["/lc/image"]),
    )
    probe = Probe(ros_context, "probe_lc")
    try:
        with spinning(ros_context, node, probe.node):
            assert state_of(node) == "unconfigured" and node.pipeline.segmenter is None
            assert count_subscribers(probe, "/lc/image", 0) == 0

            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert state_of(node) == "inactive" and node.pipeline.segmenter is not None
            assert count_subscribers(probe, "/lc/image", 0) == 0, "inactive node must not subscribe"
            # reload parameters are locked while configured
            locked = node.set_parameters([Parameter("input_width", value=64)])[0]
            assert not locked.successful and "unconfigured" in locked.reason

            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            assert count_subscribers(probe, "/lc/image", 1) == 1
            labels = probe.subscribe("/seg_lc/label_info_json", String, latched=True)
            masks = probe.subscribe("/seg_lc/mask")
            pub = probe.publisher("/lc/image")
            wait_for_subscribers(pub)
            frame = camera_frame(80, 60, seed=11)
            publish_until(pub, lambda i: image_msg(frame, "rgb8", 100 + i, "lc"), masks)
            assert any(m.header.frame_id == "lc" for m in masks.items)
            assert labels.wait_count(1, 20.0), "label info not published on activate"

            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert count_subscribers(probe, "/lc/image", 0) == 0
            n = len(masks.items)
            for i in range(5):
                pub.publish(image_msg(frame, "rgb8", 200 + i, "inactive"))
                time.sleep(0.05)
            time.sleep(1.0)
            assert len(masks.items) == n, "an inactive node published masks"

            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            assert state_of(node) == "unconfigured" and node.pipeline.segmenter is None
            # now reload parameters may change, and the next configure uses them
            assert node.set_parameters([Parameter("input_width", value=32), Parameter("input_height", value=32)])[
                0
            ].successful
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert tuple(node.pipeline.segmenter.input_size) == (32, 32)
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            publish_until(pub, lambda i: image_msg(frame, "rgb8", 300 + i, "again"), masks)
            assert any(m.header.frame_id == "again" for m in masks.items)
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        probe.destroy()
        node.destroy_node()


def test_failed_configure_leaves_node_unconfigured(ros_context, seeded_weights, tmp_path):
    node = LifecycleSegmentationNode(
        "seg_lc_bad",
        context=ros_context,
        parameter_overrides=params(tmp_path / "missing.safetensors", input_topics=["/lc_bad/image"]),
    )
    probe = Probe(ros_context, "probe_lc_bad")
    try:
        with spinning(ros_context, node, probe.node):
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert state_of(node) == "unconfigured"
            assert node.pipeline.segmenter is None and not node.pipeline._pubs
            assert probe.node.count_publishers("/seg_lc_bad/mask") == 0
            # inconsistent sizes pass one at a time while unconfigured, fail at configure
            assert node.set_parameters(
                [
                    Parameter("weights", value=str(seeded_weights)),
                    Parameter("input_width", value=64),
                ]
            )[0].successful
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert node.set_parameters([Parameter("input_height", value=64)])[0].successful
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert state_of(node) == "inactive"
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        probe.destroy()
        node.destroy_node()


def test_transitions_through_lifecycle_services(ros_context, seeded_weights):
    node = LifecycleSegmentationNode(
        "seg_lc_srv",
        context=ros_context,
        parameter_overrides=params(seeded_weights, input_topics=["/lc_srv/image"]),
    )
    probe = Probe(ros_context, "probe_lc_srv")
    try:
        change = probe.node.create_client(ChangeState, "/seg_lc_srv/change_state")
        get = probe.node.create_client(GetState, "/seg_lc_srv/get_state")
        with spinning(ros_context, node, probe.node):
            assert change.wait_for_service(30.0) and get.wait_for_service(30.0)

            def call(client, request):
                future = client.call_async(request)
                deadline = time.monotonic() + WAIT_S
                while not future.done() and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert future.done(), "service call timed out"
                return future.result()

            for transition, label in (
                (Transition.TRANSITION_CONFIGURE, "inactive"),
                (Transition.TRANSITION_ACTIVATE, "active"),
                (Transition.TRANSITION_DEACTIVATE, "inactive"),
                (Transition.TRANSITION_CLEANUP, "unconfigured"),
            ):
                assert call(change, ChangeState.Request(transition=Transition(id=transition))).success
                assert call(get, GetState.Request()).current_state.label == label
            assert call(
                change,
                ChangeState.Request(transition=Transition(id=Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)),
            ).success
            assert call(get, GetState.Request()).current_state.id == State.PRIMARY_STATE_FINALIZED
            assert node.pipeline.segmenter is None
    finally:
        probe.destroy()
        node.destroy_node()
