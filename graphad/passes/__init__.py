"""Graph passes: autodiff (reverse, forward) and the optimisation pipeline.

`ga.passes.optimize(outputs, passes=None) -> (outputs, report)` runs the standard pipeline
(manager.PIPELINE); every pass is public here and takes a `Program` or a pytree of outputs.
Imported early by graphad/__init__ (after the op catalogue): these modules import ops lazily.
"""

from .cse import cse, eliminate_common_subexpressions  # noqa: F401
from .dce import dce, eliminate_dead_code  # noqa: F401
from .fold import fold_constants  # noqa: F401
from .manager import PIPELINE, optimize, optimize_for_session, run_passes  # noqa: F401
from .rewrite import Decline, Program, Rule, graph_pass, rebuild  # noqa: F401
from .simplify import simplify  # noqa: F401
from .verify import verify  # noqa: F401

try:  # part B: loop-invariant code motion and fusion
    from .licm import hoist_loop_invariants  # noqa: F401
except ImportError:  # pragma: no cover
    pass
try:
    from .fuse import fuse  # noqa: F401
except ImportError:  # pragma: no cover
    pass
