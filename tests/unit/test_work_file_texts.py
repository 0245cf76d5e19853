"""work.json's units as the chief's writer encodes them (`state_writer.UnitTexts`): always the
text of each unit as it is now, through every kind of change on a real work board, and an
unchanged unit's text reused, not encoded again."""

from __future__ import annotations

import json

from tunecluster.cluster.chief.state_writer import UnitTexts
from tunecluster.cluster.work import Board, unit_dict


def _expected(board):
    with board.lock:
        return [json.dumps(unit_dict(u), default=str) for u in board.units.values()]


def test_each_units_text_follows_every_change_and_unchanged_ones_are_reused():
    board = Board(experiment_seed=1, executions=2)
    texts = UnitTexts()

    def check():
        _, units = board.save_parts()
        got = texts(units)
        assert got == _expected(board)
        return got

    board.add_trial("0001")
    board.add_trial("0002")
    check()
    first = board.take("w0")
    check()
    board.record_epoch(first.key, "w0", 1, {"loss": 0.5})
    check()
    board.record_epoch(first.key, "w0", 2, {"loss": 0.4})
    check()
    board.finish(first.key, {"best": {"val_accuracy": 0.7}})
    check()
    second = board.take("w1")
    board.give_back(second.key)
    check()
    third = board.take("w1")
    board.fail(third.key, "ValueError: bad")
    before = check()
    again = check()
    assert all(a is b for a, b in zip(before, again))  # nothing changed: no unit encoded again
    board.drop_trial("0002")
    check()
    board.add_confirmation(["0001"], 2)
    check()


def test_the_board_is_copied_in_chunks_with_each_keys_newest_unit(monkeypatch):
    """save_parts lets the lock go between chunks of units; what changes meanwhile is saved as it
    is by then (a unit taken, a retried trial's new units), a dropped trial's units not at all,
    and units added after the keys were read are left to the next save."""
    from tunecluster.cluster import work

    board = Board(experiment_seed=1, executions=1)
    for n in range(1, 6):
        board.add_trial(f"000{n}")
    old_unit = board.take("w0")  # 0001#0, running
    chunks = []

    def between_chunks():
        chunks.append(len(chunks))
        if len(chunks) == 1:  # after the first chunk (0001, 0002): the handlers change the board
            assert not board.lock._is_owned()  # the lock was let go
            board.take("w1", "0004#0")
            board.add_trial("0003")  # retried from the start: new units under the same key
            board.drop_trial("0005")
            board.add_trial("0006")

    monkeypatch.setattr(work, "SAVE_CHUNK", 2)
    monkeypatch.setattr(work, "pause_point", between_chunks)
    head, units = board.save_parts()
    assert len(chunks) == 3
    by_key = {u["key"]: u for u in units}
    assert list(by_key) == ["0001#0", "0002#0", "0003#0", "0004#0"]
    assert by_key["0001#0"]["state"] == "running" and by_key["0001#0"] == unit_dict(old_unit)
    assert by_key["0004#0"]["state"] == "running" and by_key["0004#0"]["worker"] == "w1"
    assert by_key["0003#0"]["attempts"] == 0 and by_key["0003#0"] is not board.units["0003#0"].__dict__
    assert head["order"] == ["0002#0", "0003#0", "0004#0", "0005#0"]  # as it was when the keys were read
    restored = Board.from_dict(head | {"units": units}, experiment_seed=1, executions=1)
    assert restored.order == ["0002#0", "0003#0"]  # only the units still pending and still there


def test_an_oracles_state_is_detached_from_the_live_containers():
    """flush_oracle copies the oracle's state under its lock and encodes it outside: every list
    and dict in it (a defaultdict too, Hyperband's nested brackets) must be a copy."""
    import collections

    from tunecluster.cluster.chief.state_writer import detached

    run_times = collections.defaultdict(lambda: 0, {"0001": 1})
    brackets = [{"bracket_num": 0, "rounds": [["0001", "0002"], []]}]
    state = {"start_order": ["0001"], "run_times": run_times, "brackets": brackets, "seed": 3, "name": "x"}
    copy = detached(state)
    assert json.dumps(copy) == json.dumps(state)
    state["start_order"].append("0002")
    run_times["0002"] = 1
    brackets[0]["rounds"][1].append("0003")
    brackets.append({"bracket_num": 1, "rounds": []})
    assert copy == {"start_order": ["0001"], "run_times": {"0001": 1}, "seed": 3, "name": "x",
                    "brackets": [{"bracket_num": 0, "rounds": [["0001", "0002"], []]}]}
