"""The chief role: Keras Tuner's oracle behind a multi-threaded, authenticated gRPC server.

    server.py           Chief: builds the oracle, serves it, exits when the search is done
    servicer.py         Keras Tuner's Oracle RPCs, guarded, with trial leases
    control_service.py  tunecluster's control RPCs (heartbeats, failure notes, the end of the search)
    work_service.py     the work protocol: executions, confirmation runs, results
    save_threshold.py   the score a training must reach for its weights to be written
    book.py             who ran what and when (SearchBook)
    book_journal.py     the book's changes on disk before their call returns (the book journal)
    state_writer.py     oracle files, work.json, progress.json and results, written off the call path
    journal.py          every trial's state on disk before its call returns (the trial journal)
    recovery.py         what a restarted chief reloads and repairs
    heap_freezing.py    full garbage collections that walk only what the search created lately
"""

from tunecluster.cluster.chief.book import SearchBook
from tunecluster.cluster.chief.control_service import ControlService
from tunecluster.cluster.chief.server import Chief, run_chief
from tunecluster.cluster.chief.servicer import ChiefServicer

__all__ = ["Chief", "ChiefServicer", "ControlService", "SearchBook", "run_chief"]
