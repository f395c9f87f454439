"""Execution devices: onnxruntime providers, with a check that a session really runs where asked."""

import onnxruntime as ort

from .errors import DeviceError

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_AUTO = {}


def cuda_problem():
    """None when the CUDA provider really runs here, else the reason it does not (cached)."""
    if "cuda" in _AUTO:
        return _AUTO["cuda"]
    reason = None
    if _CUDA not in ort.get_available_providers():
        reason = (f"this onnxruntime build ({ort.__version__}) has no {_CUDA}; install "
                  "graphad[gpu] (onnxruntime-gpu) instead of onnxruntime")
    else:
        reason = _probe_cuda()
    _AUTO["cuda"] = reason
    return reason


def _probe_cuda():
    from onnx import TensorProto, helper  # noqa: PLC0415

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    try:
        make_inference_session(model, "cuda", None, check=True)
    except DeviceError as e:
        return str(e)
    return None


def resolve_device(device):
    if device in (None, "cpu"):
        return "cpu"
    if device == "cuda" or (isinstance(device, str) and device.startswith("cuda")):
        problem = cuda_problem()
        if problem:
            raise DeviceError(f"device 'cuda' cannot run: {problem}")
        return "cuda"
    if device == "auto":
        return "cpu" if cuda_problem() else "cuda"
    raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'auto'")


# From this many top-level ONNX nodes on, onnxruntime's own graph transformers and its memory
# pattern planning cost more than they give (W4 at 30,000 layers, 180,000 nodes: session 14.3 s
# at level ALL, 12.6 s at BASIC; first run 3.3 s with the memory pattern, 0.1 s without; the
# steady-state run is the same): such graphs come from graphad's passes already optimised.
LARGE_GRAPH_NODES = 20_000


def make_inference_session(model, device, threads, check=True):
    """An InferenceSession on `device`; raises DeviceError if onnxruntime fell back to CPU."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not isinstance(model, bytes) and len(model.graph.node) >= LARGE_GRAPH_NODES:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.enable_mem_pattern = False
    opts.log_severity_level = 4  # run-time failures come back as RunErrors naming the op
    if threads:
        opts.intra_op_num_threads = int(threads)
    # Pool threads that spin for work fight the calling thread for the same cores: on a 2-core
    # machine that cost W1 a third of its step time (benchmarks/PROFILE.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [_CUDA, _CPU] if device == "cuda" else [_CPU]
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        sess = ort.InferenceSession(data, sess_options=opts, providers=providers)
    except Exception as e:
        if device == "cuda":
            raise DeviceError(f"onnxruntime could not create a CUDA session: {e}") from None
        raise
    if check and device == "cuda" and sess.get_providers()[0] != _CUDA:
        raise DeviceError(
            f"onnxruntime fell back to {sess.get_providers()} instead of {_CUDA} "
            "(no usable GPU, or the CUDA/cuDNN libraries are missing)"
        )
    return sess
