"""A local, open, Kaggle-style competition harness for biomedical image analysis."""

__version__ = "0.1.0"
