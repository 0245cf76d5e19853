// Command loadgen simulates N workers against a tunecluster chief (its real worker protocol:
// token, NextWork/WorkDone, heartbeats, epoch reports) or against stock Keras Tuner's chief
// (CreateTrial/GetTrial/UpdateTrial/EndTrial), with simulated training (a sleep), and prints one
// JSON document: per-RPC latency, trials per worker, idle time, duplicates and its own CPU per
// call. Build: `cd benchmarks/loadgen && GOFLAGS=-mod=mod go build -o loadgen .`
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

type Config struct {
	Addr           string
	Token          string
	Mode           string
	Workers        int
	Conns          int
	TrialSeconds   float64
	Jitter         float64
	Epochs         int
	Heartbeat      time.Duration
	IdleBackoffMax time.Duration
	KTIdleSleep    time.Duration
	Duration       time.Duration
	MaxDuration    time.Duration
	Warmup         time.Duration
	Ramp           time.Duration
	RPCTimeout     time.Duration
	SpaceFile      string
	Out            string
	ListKeys       bool
	PerWorker      bool
}

// rawCodec: bytes in, bytes out (tunecluster's control calls are JSON; Keras Tuner's protos are
// encoded by hand).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func mathFloat64bits(f float64) uint64 { return math.Float64bits(f) }

func main() {
	cfg := &Config{}
	var heartbeat, idleMax, ktIdle, duration, maxDuration, warmup, ramp, timeout float64
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8000", "the chief's address")
	flag.StringVar(&cfg.Token, "token", os.Getenv("TUNECLUSTER_TOKEN"), "the experiment's token (default $TUNECLUSTER_TOKEN)")
	flag.StringVar(&cfg.Mode, "mode", "tunecluster", "tunecluster | keras_tuner")
	flag.IntVar(&cfg.Workers, "workers", 100, "simulated workers")
	flag.IntVar(&cfg.Conns, "conns", 0, "gRPC connections shared by the workers (0: one per worker, as real workers)")
	flag.Float64Var(&cfg.TrialSeconds, "trial-seconds", 10, "simulated training time of a trial")
	flag.Float64Var(&cfg.Jitter, "jitter", 0.1, "trial length varies by +- this fraction")
	flag.IntVar(&cfg.Epochs, "epochs", 0, "epoch reports per trial in the heartbeats (0: none)")
	flag.Float64Var(&heartbeat, "heartbeat", 2.0, "heartbeat interval (s); a heartbeat_s in the chief's answer replaces it")
	flag.Float64Var(&idleMax, "idle-backoff-max", 1.0, "longest sleep between IDLE answers (s)")
	flag.Float64Var(&ktIdle, "kt-idle-sleep", 0, "keras_tuner mode: sleep after an IDLE answer (s; Keras Tuner: none)")
	flag.Float64Var(&duration, "duration", 0, "stop after this many seconds: trainings are cut short and reported (0: run until STOPPED)")
	flag.Float64Var(&maxDuration, "max-duration", 3600, "give up after this many seconds in any case")
	flag.Float64Var(&warmup, "warmup", 0, "latencies and busy time are measured from this many seconds on")
	flag.Float64Var(&ramp, "ramp", 5, "workers start spread over this many seconds")
	flag.Float64Var(&timeout, "rpc-timeout", 10, "deadline of each call (s; a real worker's control calls: 10)")
	flag.StringVar(&cfg.SpaceFile, "space", "", "a JSON file of Keras Tuner's hyperparameters config, sent with SetSpace first")
	flag.StringVar(&cfg.Out, "out", "", "write the JSON document here too")
	flag.BoolVar(&cfg.ListKeys, "list-keys", false, "include the finished work keys (trial ids) in the document")
	flag.BoolVar(&cfg.PerWorker, "per-worker", false, "include every worker's counts in the document")
	flag.Parse()
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	cfg.Heartbeat, cfg.IdleBackoffMax, cfg.KTIdleSleep = sec(heartbeat), sec(idleMax), sec(ktIdle)
	cfg.Duration, cfg.MaxDuration, cfg.Warmup, cfg.Ramp, cfg.RPCTimeout = sec(duration), sec(maxDuration), sec(warmup), sec(ramp), sec(timeout)
	if cfg.Mode != "tunecluster" && cfg.Mode != "keras_tuner" {
		fmt.Fprintln(os.Stderr, "loadgen: -mode must be tunecluster or keras_tuner")
		os.Exit(2)
	}
	document, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	text, _ := json.MarshalIndent(document, "", "  ")
	if cfg.Out != "" {
		if err := os.WriteFile(cfg.Out, append(text, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}
	fmt.Println(string(text))
}

func dial(cfg *Config) (*grpc.ClientConn, error) {
	return grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(64<<20)))
}

func setSpace(cfg *Config, conn *grpc.ClientConn) error {
	config, err := os.ReadFile(cfg.SpaceFile)
	if err != nil {
		return err
	}
	body := []byte(`{"hyperparameters": ` + string(config) + `}`)
	md := metadata.Pairs("tunecluster-tuner-id", "loadgen-setup")
	if cfg.Token != "" {
		md.Append("authorization", "Bearer "+cfg.Token)
	}
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 120*time.Second)
	defer cancel()
	var reply []byte
	return conn.Invoke(ctx, controlService+"SetSpace", body, &reply, grpc.WaitForReady(true))
}

type simulated interface {
	run(stopAt, hardStop time.Time)
	counts() WorkerStats
}

func (w *tcWorker) counts() WorkerStats { return w.stats }
func (w *ktWorker) counts() WorkerStats { return w.stats }

func run(cfg *Config) (map[string]any, error) {
	rec, keys := NewRecorder(), NewKeys()
	nConns := cfg.Conns
	if nConns <= 0 || nConns > cfg.Workers {
		nConns = cfg.Workers
	}
	conns := make([]*grpc.ClientConn, nConns)
	for i := range conns {
		c, err := dial(cfg)
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	if cfg.SpaceFile != "" && cfg.Mode == "tunecluster" {
		if err := setSpace(cfg, conns[0]); err != nil {
			return nil, fmt.Errorf("SetSpace: %w", err)
		}
	}
	workers := make([]simulated, cfg.Workers)
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	for i := range workers {
		id := fmt.Sprintf("sim%05d", i)
		if cfg.Mode == "tunecluster" {
			w := newTCWorker(id, conns[i%nConns], cfg, rec, keys, int64(i+1))
			w.logf = logf
			workers[i] = w
		} else {
			workers[i] = newKTWorker(id, conns[i%nConns], cfg, rec, keys, int64(i+1))
		}
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	rec.measureFrom = start.Add(cfg.Warmup)
	var stopAt time.Time
	hardStop := start.Add(cfg.MaxDuration)
	rec.measureTo = hardStop
	if cfg.Duration > 0 {
		stopAt = start.Add(cfg.Duration)
		rec.stopAt = stopAt
		rec.measureTo = stopAt
	}
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		delay := time.Duration(0)
		if cfg.Workers > 1 {
			delay = time.Duration(float64(cfg.Ramp) * float64(i) / float64(cfg.Workers))
		}
		go func(w simulated, delay time.Duration) {
			defer wg.Done()
			time.Sleep(delay)
			w.run(stopAt, hardStop)
		}(w, delay)
	}
	wg.Wait()
	ended := time.Now()
	cpu := cpuSeconds() - cpu0
	for _, c := range conns {
		c.Close()
	}
	if cfg.Duration == 0 {
		rec.measureTo = ended
	}
	window := rec.measureTo.Sub(rec.measureFrom).Seconds()
	return summarize(cfg, rec, keys, workers, window, ended.Sub(start).Seconds(), cpu), nil
}

func spread(values []float64) map[string]float64 {
	if len(values) == 0 {
		return map[string]float64{}
	}
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	sum := 0.0
	for _, v := range sorted {
		sum += v
	}
	return map[string]float64{"min": sorted[0], "p50": percentile(sorted, 50), "mean": sum / float64(len(sorted)),
		"max": sorted[len(sorted)-1]}
}

func summarize(cfg *Config, rec *Recorder, keys *Keys, workers []simulated, window, wall, cpu float64) map[string]any {
	var started, finished, idle, busyFrac []float64
	total := WorkerStats{}
	ranTrials := 0
	perWorker := make([]WorkerStats, len(workers))
	adopted := 0.0
	for i, w := range workers {
		s := w.counts()
		s.IdleS = math.Max(0, window-s.BusyS)
		perWorker[i] = s
		started = append(started, float64(s.Started))
		finished = append(finished, float64(s.Finished))
		idle = append(idle, s.IdleS)
		if window > 0 {
			busyFrac = append(busyFrac, s.BusyS/window)
		}
		total.Started += s.Started
		total.Finished += s.Finished
		total.Refused += s.Refused
		total.RefusedAfterTimeout += s.RefusedAfterTimeout
		total.Revoked += s.Revoked
		total.Stopped += s.Stopped
		total.BusyS += s.BusyS
		if s.Started > 0 {
			ranTrials++
		}
		if tc, ok := w.(*tcWorker); ok && tc.beat.adopted > 0 {
			adopted = tc.beat.adopted
		}
	}
	keys.mu.Lock()
	startedTwice, sameWorkerAgain, finishedTwice, unfinished := 0, 0, 0, 0
	var finishedKeys, startedKeys []string
	for key, by := range keys.started {
		startedKeys = append(startedKeys, key)
		if len(by) > 1 {
			startedTwice++ // by two workers
		}
		for _, n := range by {
			if n > 1 {
				sameWorkerAgain++
			}
		}
		if keys.finished[key] == 0 {
			unfinished++
		}
	}
	for key, n := range keys.finished {
		if n > 1 {
			finishedTwice++
		}
		finishedKeys = append(finishedKeys, key)
	}
	keys.mu.Unlock()
	sort.Strings(startedKeys)
	sort.Strings(finishedKeys)
	calls := rec.TotalCalls()
	busy := 0.0
	if window > 0 {
		busy = total.BusyS / (window * float64(len(workers)))
	}
	doc := map[string]any{
		"mode": cfg.Mode, "workers": cfg.Workers, "trial_seconds": cfg.TrialSeconds, "epochs": cfg.Epochs,
		"heartbeat_s": cfg.Heartbeat.Seconds(), "heartbeat_s_adopted": adopted, "token": cfg.Token != "",
		"window_s": window, "wall_s": wall, "warmup_s": cfg.Warmup.Seconds(),
		"rpc": rec.Summary(), "calls": calls,
		"loadgen_cpu_s": cpu, "loadgen_cpu_ms_per_call": 1000 * cpu / math.Max(1, float64(calls)),
		"loadgen_cores": cpu / math.Max(wall, 1e-9),
		"trials": map[string]any{"started": total.Started, "finished": total.Finished, "refused": total.Refused, "refused_after_timeout": total.RefusedAfterTimeout,
			"revoked": total.Revoked, "stopped_early": total.Stopped, "distinct_started": len(keys.started),
			"started_twice": startedTwice, "same_worker_again": sameWorkerAgain, "finished_twice": finishedTwice, "never_finished": unfinished},
		"busy_fraction": busy, "workers_that_ran_trials": ranTrials,
		"per_worker": map[string]any{"started": spread(started), "finished": spread(finished), "idle_s": spread(idle),
			"busy_fraction": spread(busyFrac)},
	}
	if cfg.ListKeys {
		doc["finished_keys"] = finishedKeys
		doc["started_keys"] = startedKeys
	}
	if cfg.PerWorker {
		doc["workers_detail"] = perWorker
	}
	return doc
}
