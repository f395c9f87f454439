"""(being written)"""

__all__ = []
inv = solve = det = None
