"""The node's QoS choices by name, as plain values (no ROS); the node turns them into QoSProfiles.

Every profile keeps the last `depth` messages. 'sensor_data' is ROS's profile of that name (best
effort, volatile): it accepts best-effort and reliable publishers alike.
"""

from __future__ import annotations

# name -> (reliability, durability), in the names of rclpy's ReliabilityPolicy / DurabilityPolicy
PROFILES = {
    "sensor_data": ("BEST_EFFORT", "VOLATILE"),
    "best_effort": ("BEST_EFFORT", "VOLATILE"),
    "reliable": ("RELIABLE", "VOLATILE"),
    "system_default": ("SYSTEM_DEFAULT", "SYSTEM_DEFAULT"),
    "latched": ("RELIABLE", "TRANSIENT_LOCAL"),  # the last message waits for late subscribers
}


def qos_policies(name: str, depth: int) -> tuple[str, str, int]:
    """(reliability, durability, depth) of the profile `name`; KeyError for an unknown one."""
    reliability, durability = PROFILES[name]
    return reliability, durability, int(depth)
