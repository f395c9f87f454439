"""Global configuration: `enable_x64` and the `x64()` context (JAX semantics)."""

from .types import enable_x64, x64, x64_enabled

__all__ = ["enable_x64", "x64", "x64_enabled"]
