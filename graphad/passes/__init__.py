"""Graph passes: autodiff (reverse, forward) and the optimisation pipeline."""
