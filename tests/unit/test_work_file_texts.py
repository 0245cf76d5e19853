"""work.json's units as the chief's writer encodes them (`state_writer.UnitTexts`): always the
text of each unit as it is now, through every kind of change on a real work board, and an
unchanged unit's text reused, not encoded again."""

from __future__ import annotations

import json

from tunecluster.cluster.chief.state_writer import UnitTexts
from tunecluster.cluster.work import Board, unit_dict


def _expected(board):
    _, units = board.save_parts()
    return [json.dumps(unit_dict(u), default=str) for u in units]


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
