"""Training: the loop, checkpoints, the config and its schema, building models and diffusions."""
