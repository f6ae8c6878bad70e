"""Keras architectures and losses shared by the baseline entries."""
