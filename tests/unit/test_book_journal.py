"""The book's journal (cluster/chief/book_journal.py): who ran each trial and when survives a
chief killed between two results.json writes, and the state writer's rotation keeps the journal
no longer than what results.json does not hold yet."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from tunecluster.cluster.chief import book_journal
from tunecluster.cluster.chief.book import SearchBook
from tunecluster.cluster.chief.book_journal import BookJournal
from tunecluster.cluster.chief.recovery import reload_book


def _iso(ts):
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def test_a_restarted_chief_gets_back_the_starts_and_ends_that_results_json_missed(tmp_path):
    book = SearchBook(BookJournal(tmp_path))
    book.trial_started("0001", "worker-0")
    book.trial_ended("0001", "COMPLETED", at=1000.5)
    book.trial_started("0002", "worker-1")
    # the last results.json the killed chief wrote knew 0001 only as running
    started = book.trial_meta["0001"]["started"]
    (tmp_path / "results.json").write_text(json.dumps({"trials": [
        {"trial_id": "0001", "status": "RUNNING", "worker": "worker-0", "started": _iso(started), "ended": None}]}))
    # (SIGKILL: nothing rotated or closed)
    again = SearchBook(BookJournal(tmp_path))
    reload_book(again, tmp_path / "results.json", tmp_path)
    assert again.trial_meta["0001"]["status"] == "COMPLETED"
    assert again.trial_meta["0001"]["ended"] == 1000.5
    assert again.trial_meta["0001"]["started"] == started
    assert again.trial_meta["0002"]["worker"] == "worker-1"
    assert again.trial_meta["0002"]["ended"] is None


def test_the_last_entry_of_a_trial_wins_and_stopped_early_and_failure_notes_are_kept(tmp_path):
    book = SearchBook(BookJournal(tmp_path))
    book.trial_started("0001", "worker-0")
    book.trial_requeued("0001", "worker-0", "lease expired")
    book.trial_started("0001", "worker-1")
    book.trial_ended("0001", "COMPLETED", stopped_early=2)
    book.trial_started("0002", "worker-0")
    book.note({"trial_id": "0002", "tuner_id": "worker-0", "error_type": "ValueError", "message": "bad"})
    book.trial_ended("0002", "FAILED")
    replayed = book_journal.replay(tmp_path)
    assert replayed["0001"]["worker"] == "worker-1" and replayed["0001"]["stopped_early"] == 2
    assert replayed["0001"]["requeues"] == 1
    assert replayed["0002"]["status"] == "FAILED" and replayed["0002"]["error_type"] == "ValueError"


def test_a_trial_queued_again_is_left_to_recovery(tmp_path):
    book = SearchBook(BookJournal(tmp_path))
    book.trial_started("0001", "worker-0")
    book.trial_requeued("0001", "worker-0", "lease expired")
    again = SearchBook()
    reload_book(again, tmp_path / "results.json", tmp_path)  # (no results.json yet)
    assert "0001" not in again.trial_meta


def test_rotation_keeps_only_what_results_json_does_not_hold_yet(tmp_path):
    journal = BookJournal(tmp_path)
    book = SearchBook(journal)
    book.trial_started("0001", "worker-0")
    first = journal.rotate()  # the writer copied the book...
    book.trial_ended("0001", "COMPLETED")  # ...and this change came after the copy
    assert len(first) == 1 and first[0].exists()
    BookJournal.retire(first)  # ...and wrote results.json
    left = book_journal.files(tmp_path)
    assert len(left) == 1 and left[0][1] == 2
    assert book_journal.replay(tmp_path)["0001"]["status"] == "COMPLETED"
    # a write that failed: its files come back with the next rotation
    second = journal.rotate()
    journal.keep(second)
    assert journal.rotate() == second
    BookJournal.retire(second)
    assert book_journal.files(tmp_path) == []


def test_a_previous_chiefs_files_are_retired_by_the_first_write_of_the_next(tmp_path):
    SearchBook(BookJournal(tmp_path)).trial_started("0001", "worker-0")
    journal = BookJournal(tmp_path)  # the restarted chief
    SearchBook(journal).trial_started("0002", "worker-1")
    assert [n for _, n in book_journal.files(tmp_path)] == [1, 2]
    BookJournal.retire(journal.rotate())
    assert book_journal.files(tmp_path) == []


def test_a_torn_last_line_is_skipped(tmp_path):
    book = SearchBook(BookJournal(tmp_path))
    book.trial_started("0001", "worker-0")
    path = book_journal.files(tmp_path)[0][0]
    with open(path, "a") as handle:
        handle.write('{"trial_id": "0002", "meta": {"wor')
    assert set(book_journal.replay(tmp_path)) == {"0001"}


def test_lines_written_out_of_order_and_a_later_chiefs_lines_are_ordered_by_their_numbers(tmp_path):
    first = BookJournal(tmp_path)
    first.append("0001", 2, {"status": "COMPLETED"})  # numbered second, written first
    first.append("0001", 1, {"status": "RUNNING"})
    first.append("0002", 9, {"status": "RUNNING"})
    assert book_journal.replay(tmp_path)["0001"]["status"] == "COMPLETED"
    second = BookJournal(tmp_path)  # a restarted chief numbers from 1 again
    second.append("0002", 1, {"status": "COMPLETED"})
    assert book_journal.replay(tmp_path)["0002"]["status"] == "COMPLETED"
