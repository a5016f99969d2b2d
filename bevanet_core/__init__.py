"""bevanet_core: BEVANet models, data, training, evaluation, export and runtime (no ROS)."""

__version__ = "0.1.0"
