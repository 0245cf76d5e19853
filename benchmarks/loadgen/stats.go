package main

// Latency and per-worker accounting shared by both worker modes.

import (
	"math"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/status"
)

// Recorder keeps every call's latency by RPC type (only calls that start inside the measured
// window) and error counts.
type Recorder struct {
	mu          sync.Mutex
	lat         map[string][]float64 // seconds
	errors      map[string]int
	codes       map[string]map[string]int // errors by gRPC status code
	calls       map[string]int            // every call, measured window or not
	late        map[string]int            // errors of calls started after the load's end (stopAt)
	measureFrom time.Time
	measureTo   time.Time
	stopAt      time.Time // the simulated workers stop taking work (zero: none)
}

func NewRecorder() *Recorder {
	return &Recorder{lat: map[string][]float64{}, errors: map[string]int{}, calls: map[string]int{},
		codes: map[string]map[string]int{}, late: map[string]int{}}
}

func (r *Recorder) Add(method string, started time.Time, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[method]++
	if err != nil {
		r.errors[method]++
		if r.codes[method] == nil {
			r.codes[method] = map[string]int{}
		}
		r.codes[method][status.Code(err).String()]++
		if !r.stopAt.IsZero() && !started.Before(r.stopAt) {
			r.late[method]++
		}
	}
	if !started.Before(r.measureFrom) && started.Before(r.measureTo) {
		r.lat[method] = append(r.lat[method], took.Seconds())
	}
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Round(q / 100 * float64(len(sorted)-1)))
	return sorted[i]
}

// Summary: per RPC type, count, p50/p99/max in milliseconds, errors.
func (r *Recorder) Summary() map[string]map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]any{}
	for method, calls := range r.calls {
		values := append([]float64(nil), r.lat[method]...)
		sort.Float64s(values)
		row := map[string]any{"calls": calls, "measured": len(values), "errors": r.errors[method]}
		if len(r.codes[method]) > 0 {
			row["error_codes"] = r.codes[method]
			row["errors_after_stop"] = r.late[method] // while the search ends, not under load
		}
		if len(values) > 0 {
			row["p50_ms"] = percentile(values, 50) * 1000
			row["p99_ms"] = percentile(values, 99) * 1000
			row["max_ms"] = values[len(values)-1] * 1000
		}
		out[method] = row
	}
	return out
}

func (r *Recorder) TotalCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

// WorkerStats: what one simulated worker did.
type WorkerStats struct {
	Started  int `json:"started"`
	Finished int `json:"finished"` // results the chief accepted
	Refused  int `json:"refused"`  // results the chief refused (lease lost)
	// a retry refused after an attempt ran past its deadline (the chief took that attempt)
	RefusedAfterTimeout int     `json:"refused_after_timeout"`
	Revoked             int     `json:"revoked"` // trainings the chief took back by a heartbeat answer
	Stopped             int     `json:"stopped_early"`
	BusyS               float64 `json:"busy_s"` // simulated training time inside the measured window
	IdleS               float64 `json:"idle_s"` // measured window minus busy
}

// busyIn: the part of [from, to) that lies in the measured window.
func (r *Recorder) busyIn(from, to time.Time) float64 {
	if from.Before(r.measureFrom) {
		from = r.measureFrom
	}
	if to.After(r.measureTo) {
		to = r.measureTo
	}
	if !to.After(from) {
		return 0
	}
	return to.Sub(from).Seconds()
}

// Keys: which work units (trials) were handed out, to whom, and finished, to find duplicates.
// A worker that gets the same unit again (its first answer was lost to a deadline and the
// chief handed the unit out again on the retry) is not a duplicate; two workers are.
type Keys struct {
	mu       sync.Mutex
	started  map[string]map[string]int // key -> worker -> starts
	finished map[string]int
}

func NewKeys() *Keys { return &Keys{started: map[string]map[string]int{}, finished: map[string]int{}} }

func (k *Keys) Start(key, worker string) {
	k.mu.Lock()
	if k.started[key] == nil {
		k.started[key] = map[string]int{}
	}
	k.started[key][worker]++
	k.mu.Unlock()
}

func (k *Keys) Finish(key string) {
	k.mu.Lock()
	k.finished[key]++
	k.mu.Unlock()
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
