"""The ROS-free streaming layer under the node, the bag evaluator and the demo.

`decode` turns camera messages (rclpy or rosbags, duck-typed) into RGB frames, `stream` runs
them through the runtime off the caller's thread with latest-frame slots and batching, `stats`
and `slots` are its counters and latest-frame slots, `labels` the class list the node publishes,
`foxglove_view` the live view, `session` a node's state from loading its model to unloading it
and `diagnostics` what it reports. The node's parameters and launch planning live beside the
node, in `bevanet_core.serving.params` and `bevanet_core.serving.launch_plan`.
"""
