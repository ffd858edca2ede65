"""Pure torch/numpy RL core of the recommender. Never imports Django."""
