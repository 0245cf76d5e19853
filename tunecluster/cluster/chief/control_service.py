"""The chief's side of tunecluster's control RPCs (`cluster/control.py` lists them): heartbeats,
trials given back, failure notes, the search space, the work protocol (NextWork / WorkDone, see
`work_service`), and the end of the search (who exports the best model).
"""

from __future__ import annotations

import logging
import time

from tunecluster.cluster.chief.book import SearchBook
from tunecluster.cluster.chief.servicer import ChiefServicer
from tunecluster.kt_compat import oracle_state

log = logging.getLogger("tunecluster.chief")


class ControlService:
    """The chief's side of tunecluster's control RPCs (see `control.py`)."""

    def __init__(self, servicer: ChiefServicer, book: SearchBook, snapshot):
        self.servicer = servicer
        self.book = book
        self.snapshot = snapshot

    def Heartbeat(self, request: dict) -> dict:
        """Record the worker's progress (and its epoch reports: the trainings' curves) and renew
        its leases; name a trial it no longer holds, the trainings it must stop early, and the
        interval to beat at (`heartbeat_pacing`)."""
        self.book.heartbeat(request)
        tuner_id = str(request.get("tuner_id"))
        answer = {"ok": True}
        pacing = self.servicer.pacing
        if pacing is not None:  # before the renewal: a longer lease timeout applies to it
            answer["heartbeat_s"] = pacing.beat(tuner_id)
        leases = self.servicer.leases
        leases.renew_holder(tuner_id)
        work = self.servicer.work
        reports = request.get("epoch_reports") or []
        if work is not None and (reports or work.stopper is not None):
            stop = work.record_epochs(tuner_id, reports)
            if stop:
                answer["stop"] = stop  # stop these trainings at their next epoch end (early stopping)
        trial_id = request.get("work") or request.get("trial")
        if trial_id and request.get("state") == "running" and leases.holder(str(trial_id)) != tuner_id:
            answer["revoked"] = str(trial_id)
        return answer

    def Release(self, request: dict) -> dict:
        """A worker shutting down gives its trial back: it goes to the front of the queue."""
        tuner_id, trial_id = str(request.get("tuner_id")), str(request.get("trial_id"))
        reason = f"{tuner_id} gave it back ({request.get('reason', 'shutting down')})"
        work = self.servicer.work
        if work is not None and work.owns(trial_id):
            done = work.give_back(trial_id, tuner_id, reason)
        else:
            done = self.servicer.requeue(trial_id, tuner_id, reason)
        with self.book.lock:
            worker = self.book.workers.setdefault(tuner_id, {})
            worker.update(state="stopped", trial=None, last_seen=time.time())
        return {"requeued": done}

    def TrialNote(self, request: dict) -> dict:
        return self.book.note(request)

    def Status(self, request: dict) -> dict:
        return self.snapshot()

    def SetSpace(self, request: dict) -> dict:
        from keras_tuner.engine import hyperparameters as hp_module

        hps = hp_module.HyperParameters.from_config(request["hyperparameters"])
        self.servicer._guarded(None, self.servicer.oracle.update_space, hps)
        if self.servicer.work is not None:
            self.servicer.work.note_space()
        self.servicer._notify()
        return {"size": len(self.servicer.oracle.hyperparameters.space)}

    def NextWork(self, request: dict) -> dict:
        return self.servicer.work.next_work(request)

    def WorkDone(self, request: dict) -> dict:
        """A training's result; with `next`, the answer also carries the worker's next unit (what
        NextWork would answer), saving the worker a round trip per training. With `space`, the
        hyperparameters the training registered (a conditional layer, or a run_trial function's
        whole space) join the search first, so that the next trial is drawn from them."""
        if request.get("space") is not None:
            self.SetSpace({"hyperparameters": request["space"]})
        reply = self.servicer.work.work_done(request)
        if request.get("next") and reply.get("accepted"):
            reply["next"] = self.servicer.work.next_work({"tuner_id": request.get("tuner_id")})
        return reply

    def Finish(self, request: dict) -> dict:
        tuner_id = str(request.get("tuner_id"))
        with self.book.lock:
            self.book.tunecluster_workers.add(tuner_id)
            if not self.servicer.search_complete():
                # A trial taken back from a lost worker waits in the queue: run it.
                work = self.servicer.work
                pending = bool(oracle_state.queued(self.servicer.oracle)) or (work is not None and work.board.has_pending())
                return {"state": "resume" if pending else "wait"}
            has_result = any(
                t.status == "COMPLETED" for t in list(self.servicer.oracle.trials.values())
            )
            if self.book.export_state is None and has_result:
                self.book.export_state = "claimed"
                self.book.exporter = tuner_id
                self.book.touch()
                return self._export()
            if self.book.export_state == "claimed" and self.book.exporter == tuner_id:
                return self._export()  # the exporter asked again (e.g. it was restarted)
            if self.book.export_state == "claimed" and has_result:
                if not self._answering(self.book.exporter):  # the exporter is gone
                    log.warning("%s stopped answering while exporting; %s exports instead",
                                self.book.exporter, tuner_id)
                    self.book.exporter = tuner_id
                    if self.book.export_standby == tuner_id:
                        self.book.export_standby = None
                    self.book.touch()
                    return self._export()
                standby = self.book.export_standby
                if standby is None or standby == tuner_id or not self._answering(standby):
                    # one worker stays until the export is done, to take it over if the
                    # exporter is lost (killed, its node gone) while the others leave
                    self.book.export_standby = tuner_id
                    return {"state": "wait"}
            if self.book.export_standby == tuner_id:
                self.book.export_standby = None
            worker = self.book.workers.setdefault(tuner_id, {})
            worker["state"] = "done"
            return {"state": "done"}

    def _answering(self, tuner_id: str) -> bool:
        """(book lock held) Whether `tuner_id` beat within the lease timeout."""
        seen = self.book.workers.get(tuner_id, {}).get("last_seen") or 0
        return time.time() - seen <= self.servicer.leases.timeout

    def _export(self) -> dict:
        work = self.servicer.work
        return {"state": "export", "choice": work.export_choice() if work is not None else None}

    def ExportDone(self, request: dict) -> dict:
        with self.book.lock:
            self.book.export_state = "done" if request.get("ok") else "failed"
            self.book.export_message = request.get("message")
            worker = self.book.workers.setdefault(str(request.get("tuner_id")), {})
            worker["state"] = "done"
        self.servicer._notify()
        return {}


