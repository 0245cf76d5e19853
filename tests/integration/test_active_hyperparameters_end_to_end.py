"""The embedded default (Pima comprehensive): each trial shows only the hyperparameters its model
used, in results.json/.csv, the results table, TensorBoard and best/hyperparameters.json."""

from __future__ import annotations

import csv
import io
import json



def _used(values: dict) -> set:
    layers = values["num_layers"]
    return {"num_layers", "optimizer"} | {f"{kind}_{i}" for i in range(layers) for kind in ("units", "activation", "dropout")}


def test_each_trial_shows_the_hyperparameters_its_model_read(tmp_path, cli):
    done = cli("up", "--example", "pima-comprehensive", "--workers", "2", "--max-trials", "5", "--epochs", "1",
               "--confirm-top", "1", "--confirm-repeats", "1", "--seed", "11", "--dir", "run", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = [t for t in document["trials"] if t["status"] == "COMPLETED"]
    assert len(rows) == 5
    for row in rows:
        assert set(row["hyperparameters"]) == _used(row["hyperparameters"]), row["trial_id"]
        assert set(row["active"]) == set(row["hyperparameters"])
        assert set(row["all_hyperparameters"]) >= set(row["hyperparameters"])  # every value kept, marked
    assert any(len(r["all_hyperparameters"]) > len(r["hyperparameters"]) for r in rows)

    best = json.loads((tmp_path / "run" / "best" / "hyperparameters.json").read_text())
    assert set(best) == _used(best)
    metrics = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    assert metrics["hyperparameters"] == best and set(metrics["all_hyperparameters"]) >= set(best)

    table = cli("results", "--dir", "run", cwd=tmp_path, timeout=60).stdout
    blocks: dict = {}  # trial id -> the table's text of its row (a row folds over several lines)
    current = None
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1].isdigit():
            current = cells[1]
        if current is not None and len(cells) > 2:
            blocks[current] = blocks.get(current, "") + " " + " ".join(cells)
    for row in rows:
        text = blocks[row["trial_id"]].replace(",", " ")
        shown = {name for name in row["all_hyperparameters"] if f" {name}=" in text}
        assert shown == set(row["hyperparameters"]), (row["trial_id"], shown ^ set(row["hyperparameters"]))
    reader = csv.DictReader(io.StringIO((tmp_path / "run" / "results.csv").read_text()))
    for record in reader:
        row = next(r for r in rows if r["trial_id"] == record["trial_id"]) if record["status"] == "COMPLETED" else None
        if row:
            filled = {k[3:] for k, v in record.items() if k.startswith("hp.") and v != ""}
            assert filled == set(row["hyperparameters"])
