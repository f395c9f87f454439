"""The op catalogue: one module per op family; each op's rules live beside its builder."""

from .elementwise import *  # noqa: F403
from .compare import *  # noqa: F403
from .reduce import *  # noqa: F403
from .nn import *  # noqa: F403
from .shape import *  # noqa: F403
from .indexing import *  # noqa: F403
from .creation import *  # noqa: F403
from .linalg_ops import *  # noqa: F403
from .control import *  # noqa: F403
from . import linalg  # noqa: F401
