"""Data loading, splits, metrics and model cards for `train.py`."""
