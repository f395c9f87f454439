"""graphad: a define-and-run automatic-differentiation compiler to ONNX and onnxruntime."""

from . import config, export, ops, optimizers, passes  # noqa: F401
from .build import (  # noqa: F401
    Variable,
    constant,
    global_variables,
    group,
    placeholder,
    trainable_variables,
)
from .errors import (  # noqa: F401
    DeviceError,
    DTypeError,
    DTypeOverflowError,
    ExportError,
    FeedError,
    GraphadError,
    GraphError,
    NotDifferentiableError,
    OnnxImportError,
    RunError,
    ShapeError,
)
from .graph import Graph, Operation, Tensor, get_default_graph, reset_default_graph  # noqa: F401
from .ops import *  # noqa: F401,F403
from .ops import linalg  # noqa: F401
from .passes.autodiff import gradients  # noqa: F401
from .session import Session  # noqa: F401
from .export.onnx_import import import_onnx  # noqa: F401
from .sparse import hessian_sparsity, jacobian_sparsity  # noqa: F401
from .transforms import *  # noqa: F401,F403
from . import viz  # noqa: F401
from .types import (  # noqa: F401
    DType,
    TensorType,
    bool_,
    float16,
    float32,
    float64,
    int32,
    int64,
)

__version__ = "0.1.0"
