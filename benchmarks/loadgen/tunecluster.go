package main

// One simulated tunecluster worker: the sequence of tunecluster/cluster/worker/tuner.py
// (NextWork, or the next unit carried by WorkDone's answer; IDLE back-off 50 ms doubling to
// idle-backoff-max) with the heartbeat thread of worker/heartbeat.py (a beat soon after each
// change, at most one per 0.25 s, else every interval; epoch reports ride on the beats; paced by the
// chief's heartbeat_s: at most one beat per interval).

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const controlService = "/tunecluster.Control/"

// AfterTheEnd marks, in the report, the calls a simulated worker made after the chief ended the
// search for it (Finish answered): its last beats race the chief's exit, as a real worker's do.
const AfterTheEnd = " after the end"

type tcWorker struct {
	id    string
	ended atomic.Bool // the chief ended the search for this worker (Finish answered)
	conn  *grpc.ClientConn
	ctx   context.Context // carries the token and tuner id
	cfg   *Config
	rec   *Recorder
	keys  *Keys
	stats WorkerStats
	beat  *heartbeat
	rng   *rand.Rand
	logf  func(string, ...any)
}

func (w *tcWorker) call(method string, request map[string]any) (map[string]any, error) {
	body, _ := json.Marshal(request)
	var reply []byte
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.RPCTimeout)
	defer cancel()
	started := time.Now()
	err := w.conn.Invoke(ctx, controlService+method, body, &reply, grpc.WaitForReady(true))
	if w.ended.Load() {
		method += AfterTheEnd
	}
	w.rec.Add(method, started, time.Since(started), err)
	if err != nil {
		return nil, err
	}
	answer := map[string]any{}
	if len(reply) > 0 {
		if err := json.Unmarshal(reply, &answer); err != nil {
			return nil, err
		}
	}
	return answer, nil
}

func newTCWorker(id string, conn *grpc.ClientConn, cfg *Config, rec *Recorder, keys *Keys, seed int64) *tcWorker {
	md := metadata.Pairs("tunecluster-tuner-id", id)
	if cfg.Token != "" {
		md.Append("authorization", "Bearer "+cfg.Token)
	}
	w := &tcWorker{id: id, conn: conn, ctx: metadata.NewOutgoingContext(context.Background(), md), cfg: cfg,
		rec: rec, keys: keys, rng: rand.New(rand.NewSource(seed))}
	w.beat = newHeartbeat(w, cfg.Heartbeat)
	return w
}

// score: a synthetic objective that depends on the trial's values (a Bayesian oracle has
// something to fit), plus a little noise.
func score(values any, rng *rand.Rand) float64 {
	text, _ := json.Marshal(values)
	h := fnv.New32a()
	h.Write(text)
	return 0.55 + 0.4*float64(h.Sum32()%10000)/10000 + 0.01*rng.Float64()
}

func (w *tcWorker) run(stopAt time.Time, hardStop time.Time) {
	go w.beat.run()
	defer w.beat.stop()
	w.beat.report(map[string]any{"state": "starting", "pid": 0, "host": "loadgen"})
	backoff := 50 * time.Millisecond
	var answer map[string]any
	for {
		now := time.Now()
		if (!stopAt.IsZero() && now.After(stopAt)) || now.After(hardStop) {
			break
		}
		if answer != nil && answer["status"] == "STOPPED" {
			// worker/loop.py: the search is over; Finish says wait, resume, export or done
			if w.finish(hardStop) {
				answer = nil
				continue
			}
			break
		}
		if answer == nil {
			a, err := w.call("NextWork", map[string]any{"tuner_id": w.id})
			if err != nil {
				time.Sleep(500 * time.Millisecond)
				continue
			}
			answer = a
		}
		status, _ := answer["status"].(string)
		if status == "STOPPED" {
			continue
		}
		if status != "RUNNING" {
			answer = nil
			w.beat.report(map[string]any{"state": "idle", "trial": nil, "work": nil})
			time.Sleep(backoff)
			backoff *= 2
			if backoff > w.cfg.IdleBackoffMax {
				backoff = w.cfg.IdleBackoffMax
			}
			continue
		}
		backoff = 50 * time.Millisecond
		answer = w.runUnit(answer, stopAt, hardStop)
	}
	if answer != nil && answer["status"] == "RUNNING" { // handed out with the last result: give it back
		w.call("Release", map[string]any{"tuner_id": w.id, "trial_id": answer["key"], "reason": "load generator stopping"})
	}
	w.beat.report(map[string]any{"state": "stopped", "trial": nil, "work": nil})
	w.beat.flush()
}

// finish: the end of worker/loop.py's search: Finish until the chief answers; export (a no-op
// here) when asked. Returns true when the chief says to resume the search.
func (w *tcWorker) finish(hardStop time.Time) (resume bool) {
	defer func() { w.ended.Store(!resume) }()
	backoff := 100 * time.Millisecond
	for time.Now().Before(hardStop) {
		answer, err := w.call("Finish", map[string]any{"tuner_id": w.id})
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		switch answer["state"] {
		case "wait":
			time.Sleep(backoff)
			if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			continue
		case "resume":
			return true
		case "export":
			w.beat.report(map[string]any{"state": "exporting"})
			w.call("ExportDone", map[string]any{"tuner_id": w.id, "ok": true})
		}
		return false
	}
	return false
}

func (w *tcWorker) runUnit(unit map[string]any, stopAt, hardStop time.Time) map[string]any {
	key, _ := unit["key"].(string)
	trial, _ := unit["trial"].(map[string]any)
	trialID, _ := trial["trial_id"].(string)
	var values any
	if hps, ok := trial["hyperparameters"].(map[string]any); ok {
		values = hps["values"]
	}
	w.keys.Start(key, w.id)
	w.stats.Started++
	w.beat.setUnit(key)
	w.beat.report(map[string]any{"state": "running", "trial": trialID, "work": key, "execution": unit["index"],
		"epoch": 0, "metrics": map[string]any{}})
	length := w.cfg.TrialSeconds * (1 + w.cfg.Jitter*(2*w.rng.Float64()-1))
	epochs := w.cfg.Epochs
	if epochs < 1 {
		epochs = 1
	}
	final := score(values, w.rng)
	begun := time.Now()
	outcome := "done"
	ran := 0
	var curve []map[string]any // every epoch's metrics, as the real worker's result carries its history
	for e := 0; e < epochs && outcome == "done"; e++ {
		end := begun.Add(time.Duration(float64(e+1) / float64(epochs) * length * float64(time.Second)))
		var limit time.Time = hardStop
		if !stopAt.IsZero() && stopAt.Before(limit) {
			limit = stopAt
		}
		cut := false
		if end.After(limit) {
			end, cut = limit, true
		}
		timer := time.NewTimer(time.Until(end))
	wait:
		for {
			select {
			case <-timer.C:
				break wait
			case note := <-w.beat.interrupt:
				// only an answer about this unit: a beat sent before the previous unit's
				// WorkDone may come back "revoked" for that one after this one started
				if note.key == key {
					outcome = note.why
					timer.Stop()
					break wait
				}
			}
		}
		if outcome != "done" {
			break
		}
		ran = e + 1
		metrics := map[string]any{"loss": 1 - final*float64(e+1)/float64(epochs), "val_accuracy": final * (0.9 + 0.1*float64(e+1)/float64(epochs))}
		curve = append(curve, metrics)
		if w.cfg.Epochs > 0 {
			w.beat.recordEpoch(key, e+1, metrics) // 1-based, as worker/callbacks.py's ProgressReport
		}
		w.beat.report(map[string]any{"epoch": e + 1, "epochs": epochs, "metrics": metrics})
		if cut {
			break
		}
	}
	w.stats.BusyS += w.rec.busyIn(begun, time.Now())
	w.beat.setUnit("")
	if outcome == "revoked" {
		w.stats.Revoked++
		w.beat.report(map[string]any{"state": "lost trial", "trial": nil, "work": nil})
		return nil
	}
	if outcome == "stop" {
		w.stats.Stopped++
	}
	if ran == 0 {
		ran = 1
	}
	acc := map[string]any{"val_accuracy": final, "val_loss": 1 - final}
	result := map[string]any{"values": values, "best": acc, "last": acc, "best_epoch": ran - 1, "last_epoch": ran - 1,
		"epochs": ran, "curve": curve, "degenerate": false, "weights": nil, "duration_s": time.Since(begun).Seconds(),
		"timing": map[string]any{"build_s": 0.0, "fit_s": time.Since(begun).Seconds(), "check_s": 0.0, "save_s": 0.0}}
	wantNext := (stopAt.IsZero() || time.Now().Before(stopAt)) && time.Now().Before(hardStop)
	var reply map[string]any
	timedOut := false // an attempt ran past its deadline: the chief may have taken that one
	for attempt := 0; ; attempt++ {
		r, err := w.call("WorkDone", map[string]any{"tuner_id": w.id, "key": key, "ok": true, "result": result, "next": wantNext})
		if err == nil {
			reply = r
			break
		}
		if code := status.Code(err); code == codes.DeadlineExceeded || code == codes.Canceled {
			timedOut = true
		}
		if attempt >= 5 {
			w.logf("%s: WorkDone of %s failed: %v", w.id, key, err)
			return nil
		}
		time.Sleep(time.Second)
	}
	if accepted, _ := reply["accepted"].(bool); accepted {
		w.stats.Finished++
		w.keys.Finish(key)
	} else if timedOut {
		// worker/chief_link.py retries a WorkDone past its deadline; the chief took the first one
		// (the answer waited for the next trial's suggestion) and refuses the retry
		w.stats.RefusedAfterTimeout++
		w.keys.Finish(key)
	} else {
		w.stats.Refused++
	}
	w.beat.report(map[string]any{"state": "between trials", "trial": nil, "work": nil})
	next, _ := reply["next"].(map[string]any)
	return next
}

// --- the heartbeat (worker/heartbeat.py) ------------------------------------------------------

// interruption: a heartbeat answer that names a unit: revoked (its lease was lost) or stop
// (early stopping).
type interruption struct {
	key, why string
}

type heartbeat struct {
	w                     *tcWorker
	mu                    sync.Mutex
	state                 map[string]any
	epochs                []map[string]any
	unit                  string // the running unit, to route "revoked" / "stop" to it
	interval              time.Duration
	minGap                time.Duration
	wake                  chan struct{}
	done                  chan struct{}
	finished              chan struct{}
	interrupt             chan interruption
	adopted               float64       // an interval the chief told (heartbeat_s), 0 if none
	baseInterval, baseGap time.Duration // the configured interval and coalescing gap
}

func newHeartbeat(w *tcWorker, interval time.Duration) *heartbeat {
	gap := 250 * time.Millisecond
	if interval < gap {
		gap = interval
	}
	return &heartbeat{w: w, state: map[string]any{"tuner_id": w.id, "state": "starting"}, interval: interval,
		minGap: gap, baseInterval: interval, baseGap: gap, wake: make(chan struct{}, 1), done: make(chan struct{}), finished: make(chan struct{}),
		interrupt: make(chan interruption, 4)}
}

func (h *heartbeat) report(fields map[string]any) {
	h.mu.Lock()
	for k, v := range fields {
		h.state[k] = v
	}
	h.mu.Unlock()
	h.poke()
}

func (h *heartbeat) recordEpoch(work string, epoch int, metrics map[string]any) {
	h.mu.Lock()
	h.epochs = append(h.epochs, map[string]any{"work": work, "epoch": epoch, "metrics": metrics})
	h.mu.Unlock()
	h.poke()
}

func (h *heartbeat) setUnit(key string) {
	h.mu.Lock()
	h.unit = key
	h.mu.Unlock()
	for drained := false; !drained; { // interruptions meant for the previous unit
		select {
		case <-h.interrupt:
		default:
			drained = true
		}
	}
}

func (h *heartbeat) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *heartbeat) sendOnce() {
	h.mu.Lock()
	request := make(map[string]any, len(h.state)+1)
	for k, v := range h.state {
		request[k] = v
	}
	epochs := h.epochs
	h.epochs = nil
	unit := h.unit
	h.mu.Unlock()
	if len(epochs) > 0 {
		request["epoch_reports"] = epochs
	}
	answer, err := h.w.call("Heartbeat", request)
	if err != nil {
		h.mu.Lock()
		h.epochs = append(epochs, h.epochs...)
		h.mu.Unlock()
		time.Sleep(500 * time.Millisecond)
		return
	}
	for _, name := range []string{"heartbeat_s", "heartbeat_interval"} {
		if v, ok := answer[name].(float64); ok && v > 0 {
			// as worker/heartbeat.py's pace(): never below the configured interval; a paced
			// worker beats at most once per interval (changes ride on the next beat)
			h.mu.Lock()
			h.interval = time.Duration(v * float64(time.Second))
			if h.interval <= h.baseInterval {
				h.interval, h.minGap = h.baseInterval, h.baseGap
			} else {
				h.minGap = h.interval
			}
			h.adopted = v
			h.mu.Unlock()
		}
	}
	why := ""
	if revoked, _ := answer["revoked"].(string); revoked != "" && revoked == unit {
		why = "revoked"
	}
	if stops, ok := answer["stop"].([]any); ok {
		for _, s := range stops {
			if s == unit && unit != "" {
				why = "stop"
			}
		}
	}
	if why != "" {
		select {
		case h.interrupt <- interruption{key: unit, why: why}:
		default:
		}
	}
}

func (h *heartbeat) run() {
	defer close(h.finished)
	var last time.Time
	for {
		h.mu.Lock()
		interval := h.interval
		h.mu.Unlock()
		timer := time.NewTimer(interval)
		select {
		case <-h.wake:
		case <-timer.C:
		case <-h.done:
			timer.Stop()
			return
		}
		timer.Stop()
		if gap := time.Until(last.Add(h.minGap)); gap > 0 {
			select {
			case <-time.After(gap):
			case <-h.done:
				return
			}
		}
		select {
		case <-h.wake:
		default:
		}
		h.sendOnce()
		last = time.Now()
	}
}

// flush: send the latest state now (the worker's last beat), then stop.
func (h *heartbeat) flush() { h.sendOnce() }

func (h *heartbeat) stop() {
	select {
	case <-h.done:
	default:
		close(h.done)
	}
	<-h.finished
}

var _ = fmt.Sprintf
