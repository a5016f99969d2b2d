"""Option names shared by the runtime, the node and the command-line tools, kept free of torch so
that a tool can build its parser and refuse bad arguments before it loads a model."""

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
RESIZE_MODES = ("stretch", "letterbox")
