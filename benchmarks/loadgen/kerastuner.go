package main

// One simulated stock Keras Tuner worker (keras_tuner 1.4's BaseTuner.search against its
// OracleClient): CreateTrial (IDLE: ask again at once, STOPPED: exit), train, GetTrial (whether
// run_trial already reported), UpdateTrial with the trial's metrics, EndTrial with the trial
// marked COMPLETED. The protos (keras_tuner/src/protos) are encoded by hand with protowire: a
// handful of fields, no generated code.

import (
	"context"
	"math/rand"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

const oracleService = "/keras_tuner.Oracle/"

const (
	statusRunning   = 1
	statusIdle      = 2
	statusStopped   = 4
	statusCompleted = 5
)

type ktWorker struct {
	id    string
	conn  *grpc.ClientConn
	ctx   context.Context
	cfg   *Config
	rec   *Recorder
	keys  *Keys
	stats WorkerStats
	rng   *rand.Rand
}

func newKTWorker(id string, conn *grpc.ClientConn, cfg *Config, rec *Recorder, keys *Keys, seed int64) *ktWorker {
	ctx := context.Background()
	if cfg.Token != "" { // tunecluster's chief serves the same Oracle service behind its token
		ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+cfg.Token, "tunecluster-tuner-id", id))
	}
	return &ktWorker{id: id, conn: conn, ctx: ctx, cfg: cfg, rec: rec, keys: keys, rng: rand.New(rand.NewSource(seed))}
}

func (w *ktWorker) call(method string, body []byte) ([]byte, error) {
	var reply []byte
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.RPCTimeout)
	defer cancel()
	started := time.Now()
	err := w.conn.Invoke(ctx, oracleService+method, body, &reply, grpc.WaitForReady(true))
	w.rec.Add(method, started, time.Since(started), err)
	return reply, err
}

func str(field protowire.Number, value string) []byte {
	b := protowire.AppendTag(nil, field, protowire.BytesType)
	return protowire.AppendString(b, value)
}

// firstMessage: field 1 (a Trial) of a response.
func firstMessage(raw []byte) []byte {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return nil
		}
		raw = raw[n:]
		m := protowire.ConsumeFieldValue(num, typ, raw)
		if m < 0 {
			return nil
		}
		if num == 1 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(raw)
			return v
		}
		raw = raw[m:]
	}
	return nil
}

// trialFields: trial_id (2) and status (3) of a Trial.
func trialFields(trial []byte) (id string, status int) {
	for len(trial) > 0 {
		num, typ, n := protowire.ConsumeTag(trial)
		if n < 0 {
			return
		}
		trial = trial[n:]
		m := protowire.ConsumeFieldValue(num, typ, trial)
		if m < 0 {
			return
		}
		switch {
		case num == 2 && typ == protowire.BytesType:
			v, _ := protowire.ConsumeString(trial)
			id = v
		case num == 3 && typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(trial)
			status = int(v)
		}
		trial = trial[m:]
	}
	return
}

// withStatus: the Trial with its status field replaced.
func withStatus(trial []byte, status int) []byte {
	var out []byte
	for len(trial) > 0 {
		num, typ, n := protowire.ConsumeTag(trial)
		m := protowire.ConsumeFieldValue(num, typ, trial[n:])
		if n < 0 || m < 0 {
			break
		}
		if num != 3 {
			out = append(out, trial[:n+m]...)
		}
		trial = trial[n+m:]
	}
	out = protowire.AppendTag(out, 3, protowire.VarintType)
	return protowire.AppendVarint(out, uint64(status))
}

func (w *ktWorker) run(stopAt, hardStop time.Time) {
	for {
		now := time.Now()
		if (!stopAt.IsZero() && now.After(stopAt)) || now.After(hardStop) {
			return
		}
		reply, err := w.call("CreateTrial", str(1, w.id))
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		trial := firstMessage(reply)
		id, status := trialFields(trial)
		if status == statusStopped {
			return
		}
		if status != statusRunning { // IDLE: Keras Tuner asks again at once
			if w.cfg.KTIdleSleep > 0 {
				time.Sleep(w.cfg.KTIdleSleep)
			}
			continue
		}
		w.keys.Start(id, w.id)
		w.stats.Started++
		length := w.cfg.TrialSeconds * (1 + w.cfg.Jitter*(2*w.rng.Float64()-1))
		begun := time.Now()
		end := begun.Add(time.Duration(length * float64(time.Second)))
		if !stopAt.IsZero() && end.After(stopAt) {
			end = stopAt
		}
		if end.After(hardStop) {
			end = hardStop
		}
		time.Sleep(time.Until(end))
		w.stats.BusyS += w.rec.busyIn(begun, time.Now())
		w.call("GetTrial", str(1, id))
		update := str(1, id)
		entry := str(1, "val_accuracy")
		entry = protowire.AppendTag(entry, 2, protowire.Fixed64Type)
		entry = protowire.AppendFixed64(entry, mathFloat64bits(score(id, w.rng)))
		update = protowire.AppendTag(update, 2, protowire.BytesType)
		update = protowire.AppendBytes(update, entry)
		if _, err := w.call("UpdateTrial", update); err != nil {
			continue
		}
		end_ := protowire.AppendTag(nil, 1, protowire.BytesType)
		end_ = protowire.AppendBytes(end_, withStatus(trial, statusCompleted))
		if _, err := w.call("EndTrial", end_); err == nil {
			w.stats.Finished++
			w.keys.Finish(id)
		}
	}
}
