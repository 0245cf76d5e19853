"""The larger generated classification task of `early_stopping.py --model generated`.

Why this task beside Pima: Pima's 614 training rows make an epoch take ~0.05 s here, so a search's
cost is dominated by starting trainings rather than by epochs, and its 154 validation rows make
every accuracy noisy by ~0.02-0.04. Early stopping pays off where epochs cost time and the curves
say something: this task has 48,000 training rows (an epoch of the comprehensive space's models
at batch size 32 is 1,500 steps: 1.6 s for one layer of 32 units, ~3 s for three of 256, ~10 s
for six of 512, timed on this 2-core machine), 12,000 validation rows and 12,000 held-out test rows (a standard error of ~0.004 on
accuracy), and a boundary that a network keeps learning over tens of epochs: scikit-learn's
`make_classification` with 40 features, 16 of them informative and 8 redundant (linear
combinations), 4 clusters per class and 5 % of labels flipped (noise no model can learn).

The rows are a pure function of `seed`: the same CSV on every machine and run.

    python benchmarks/generated_task.py /tmp/generated.csv     # writes it (72,000 rows, ~25 MB)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROWS = 72_000
FEATURES = 40
TARGET = "label"


def write_csv(path: Path, seed: int = 0) -> Path:
    """Write the task's rows (features f00..f39 and `label`) to `path`, once; return it."""
    import pandas as pd
    from sklearn.datasets import make_classification

    path = Path(path)
    if path.exists():
        return path
    x, y = make_classification(n_samples=ROWS, n_features=FEATURES, n_informative=16, n_redundant=8,
                               n_clusters_per_class=4, flip_y=0.05, class_sep=0.8, random_state=seed)
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(FEATURES)]).round(5)
    frame[TARGET] = y
    partial = path.with_suffix(".partial")
    frame.to_csv(partial, index=False)
    partial.replace(path)
    return path


def data_section(path: Path) -> dict:
    """The spec's `data` section for the task: 2/3 training, 1/6 validation, 1/6 held-out test."""
    return {"csv": str(path), "target": TARGET, "validation_fraction": 1 / 6, "test_fraction": 1 / 6,
            "split_seed": 42}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: generated_task.py OUT.csv")
    print(write_csv(Path(sys.argv[1])))
