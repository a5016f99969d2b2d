"""The ROS-free streaming layer under the node, the bag evaluator and the demo.

`decode` turns camera messages (rclpy or rosbags, duck-typed) into RGB frames, `stream` runs
them through the runtime off the caller's thread with latest-frame slots and batching, `params`
is the node's parameter spec (validation, YAML defaults, launch arguments).
"""
