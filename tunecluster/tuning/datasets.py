"""Load the experiment's data and split it into train / validation / (optional) test.

CSV data is split with scikit-learn's `train_test_split`: first the held-out test rows (never seen
by the search), then the validation rows, each with `split_seed`. With `test_fraction: 0` this is
exactly the tutorial's `train_test_split(X, y, test_size=0.2, random_state=42)`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tunecluster.core.errors import UsageError
from tunecluster.tuning.loader import load_callable
from tunecluster.tuning.spec import DataSpec


@dataclass
class Splits:
    """The arrays a trial trains and validates on, plus the held-out test rows if any."""

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    x_test: Optional[Any] = None
    y_test: Optional[Any] = None
    feature_names: Optional[list[str]] = None

    @property
    def n_features(self) -> Optional[int]:
        shape = getattr(self.x_train, "shape", None)
        return int(shape[-1]) if shape is not None and len(shape) > 1 else None

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the training features (for a Normalization layer)."""
        x = np.asarray(self.x_train, dtype="float64")
        return x.mean(axis=0), x.var(axis=0)


def read_csv_checked(path: str, target: str):
    """Read a CSV with pandas and check it is usable: present, non-empty, numeric, has the target."""
    import pandas as pd

    csv = Path(path)
    if not csv.is_file():
        raise UsageError(f"data.csv: file {csv} not found; fix the path in the spec (relative to it)")
    try:
        frame = pd.read_csv(csv)
    except pd.errors.EmptyDataError:
        raise UsageError(f"data.csv: {csv} is empty; it needs a header row and data rows") from None
    except Exception as exc:
        raise UsageError(f"data.csv: cannot read {csv} as CSV ({exc})") from None
    if frame.empty:
        raise UsageError(f"data.csv: {csv} has a header but no data rows")
    if target not in frame.columns:
        raise UsageError(
            f"data.target: column {target!r} is not in {csv.name}; its columns are "
            f"{', '.join(map(str, frame.columns))}"
        )
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        column = non_numeric[0]
        bad = frame[column][pd.to_numeric(frame[column], errors="coerce").isna()].index[0]
        raise UsageError(
            f"data.csv: column {column!r} of {csv.name} is not numeric (row {bad + 2}: "
            f"{frame[column][bad]!r}); encode it as numbers or load it with data.loader"
        )
    if frame.isna().any().any():
        column = frame.columns[frame.isna().any()][0]
        raise UsageError(f"data.csv: column {column!r} of {csv.name} has empty cells; fill or drop them")
    return frame


def load_splits(data: DataSpec) -> Splits:
    """Load the data named by the spec and return its splits."""
    if data.loader:
        return _from_loader(data)
    if not data.csv:
        raise UsageError("data: give data.csv (a CSV file) or data.loader (\"module:function\")")
    from sklearn.model_selection import train_test_split

    frame = read_csv_checked(data.csv, data.target)
    features = [c for c in frame.columns if c != data.target]
    x = frame[features].to_numpy(dtype="float32")
    y = frame[data.target].to_numpy(dtype="float32")
    x_test = y_test = None
    if data.test_fraction > 0:
        x, x_test, y, y_test = train_test_split(
            x, y, test_size=data.test_fraction, random_state=data.split_seed
        )
        # the validation fraction is of all rows, so rescale it to what remains
        val_share = data.validation_fraction / (1.0 - data.test_fraction)
    else:
        val_share = data.validation_fraction
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=val_share, random_state=data.split_seed
    )
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, feature_names=features)


def _from_loader(data: DataSpec) -> Splits:
    func = load_callable(data.loader, "data.loader")
    kwargs = {}
    if "spec" in inspect.signature(func).parameters:
        kwargs["spec"] = data
    result = func(**kwargs)
    if isinstance(result, Splits):
        return result
    if isinstance(result, dict):
        return Splits(**result)
    if isinstance(result, (tuple, list)) and len(result) in (4, 6):
        return Splits(*result)
    raise UsageError(
        f"data.loader {data.loader!r} returned {type(result).__name__}; return "
        "(x_train, y_train, x_val, y_val) or (..., x_test, y_test)"
    )
