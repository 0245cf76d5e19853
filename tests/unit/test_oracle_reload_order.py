"""A reloaded oracle keeps its trials in creation order, so equal scores name the same best trial
in every process that reads the run folder (a restarted chief, a script's worker after search())."""

import keras_tuner as kt
import tensorflow as tf

from tunecluster.kt_compat import oracle_state


def _search_with_tied_scores(directory) -> list[str]:
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("acc", "max"), max_trials=12, seed=1)
    oracle.hyperparameters.Int("units", 1, 1000)
    oracle.verbose = 0
    oracle._set_project_dir(str(directory), "tied")
    ids = []
    for worker in range(12):
        trial = oracle.create_trial(f"w{worker}")
        oracle.update_trial(trial.trial_id, {"acc": 0.74 if worker % 3 else 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        ids.append(trial.trial_id)
    oracle.save()
    return ids


def _reloaded(directory, monkeypatch, how):
    # the filesystem's listing order is arbitrary: hand Keras Tuner the trial files newest first
    listing = tf.io.gfile.glob
    monkeypatch.setattr(tf.io.gfile, "glob", lambda pattern: sorted(listing(pattern), reverse=True))
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("acc", "max"), max_trials=12, seed=1)
    oracle._set_project_dir(str(directory), "tied")
    how(oracle)
    monkeypatch.setattr(tf.io.gfile, "glob", listing)
    return oracle


def test_trials_come_back_in_creation_order_and_ties_go_to_the_first(tmp_path, monkeypatch):
    ids = _search_with_tied_scores(tmp_path)
    assert len(ids) == 12 and len(ids[-1]) == len(ids[0])  # Keras Tuner pads them to one width

    plain = _reloaded(tmp_path, monkeypatch, lambda oracle: oracle.reload())
    assert list(plain.trials) != ids  # the listing order leaks into Keras Tuner's own reload

    oracle = _reloaded(tmp_path, monkeypatch, oracle_state.reload)
    assert list(oracle.trials) == ids
    best = oracle.get_best_trials(3)
    assert [t.trial_id for t in best] == [ids[1], ids[2], ids[4]]  # the first trials of the tied 0.74


def test_creation_order_is_numeric_where_the_padding_is_outgrown():
    assert sorted(["10", "9", "11", "x", "02"], key=oracle_state.creation_key) == ["02", "9", "10", "11", "x"]
