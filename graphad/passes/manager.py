"""The explicit optimisation pipeline (filled in by the passes issue)."""


def optimize_for_session(outputs, operations, feeds):
    """The pipeline a Session runs before lowering: (outputs, operations, feeds), possibly in a
    new graph (feeds are then the new graph's placeholders, in the same order)."""
    return outputs, operations, feeds
