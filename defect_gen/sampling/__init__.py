"""Sampling: options, the model pair, generation, conditioning, selection and the sample folder."""
