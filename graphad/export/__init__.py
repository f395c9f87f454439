"""Export graphs as standard ONNX models (inference and training steps)."""

from .api import to_onnx, train_step_to_onnx  # noqa: F401
