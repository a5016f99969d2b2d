"""Frames and the network input: encodings, resize geometry, pre- and post-processing.

Shared by the runtime (`bevanet_core.runtime`) and the exporters (`bevanet_core.export`, whose
int8 calibration must preprocess exactly as the runtime does), so it depends on neither.
"""
