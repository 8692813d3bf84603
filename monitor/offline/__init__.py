"""Recorded audio through the same pipeline: replay, evaluation, and the training data's manifest."""
