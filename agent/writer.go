package agent

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/store"
)

// stateWriter writes results and alert state to the store behind the
// checks: a durable write waits for its commit (about 10 ms, shared by the
// writes of that moment), which must hold up neither a check nor the
// alerter's lock. Only each key's latest value is written, in order.
// Rotated refresh tokens do not go through it: they are written before
// they are used (chainLocked).
type stateWriter struct {
	st          *store.Store
	logger      *slog.Logger
	instruments Instruments

	// flushing is held by a flush for its whole batch, so a write made now
	// (putNow) cannot be overtaken by an older value still in flight.
	flushing sync.Mutex
	// failing is set from a failed write to the next success, to log once.
	failing bool

	mu      sync.Mutex
	pending map[stateKey][]byte // nil: delete
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	running bool
	// taken counts the batches flushes took from pending, flushed the
	// batches whose writes ended; flushedCond (on mu) tells putDurable's
	// waiters.
	taken, flushed uint64
	flushedCond    *sync.Cond
}

type stateKey struct {
	bucket store.Bucket
	key    string
}

// writeParallel bounds the writes in flight; the store coalesces them into
// one commit.
const writeParallel = 128

// retryWait spaces the attempts after a failed write.
const retryWait = time.Second

// newStateWriter returns nil for a nil store; a nil writer writes nothing.
func newStateWriter(st *store.Store, logger *slog.Logger, in Instruments) *stateWriter {
	if st == nil {
		return nil
	}
	w := &stateWriter{st: st, logger: logger, instruments: in, pending: map[stateKey][]byte{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	w.flushedCond = sync.NewCond(&w.mu)
	return w
}

func (w *stateWriter) put(b store.Bucket, key string, raw []byte) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.pending[stateKey{b, key}] = raw
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *stateWriter) delete(b store.Bucket, key string) { w.put(b, key, nil) }

// putNow writes at once and returns when the value is durable (raw nil:
// deletes): for the changes a crash must not undo, an alert fired or
// resolved. It supersedes a pending value of the key.
func (w *stateWriter) putNow(b store.Bucket, key string, raw []byte) {
	if w == nil {
		return
	}
	w.flushing.Lock()
	defer w.flushing.Unlock()
	k := stateKey{b, key}
	w.mu.Lock()
	delete(w.pending, k)
	w.mu.Unlock()
	if !w.write(k, raw) {
		// Retried by the next flush, unless a newer value comes first.
		w.put(b, key, raw)
	}
}

// putDurable hands a value to the next flush and returns a function that
// waits until that flush has written it (or failed to, leaving it pending
// for the next): putNow's promise, but the writes of many callers share one
// commit. Call the function without holding a lock a flush needs. Before
// start and after close it writes at once, as putNow does.
func (w *stateWriter) putDurable(b store.Bucket, key string, raw []byte) (wait func()) {
	if w == nil {
		return func() {}
	}
	w.mu.Lock()
	if !w.running {
		w.mu.Unlock()
		w.putNow(b, key, raw)
		return func() {}
	}
	w.pending[stateKey{b, key}] = raw
	// The batch that takes the value is the next one taken.
	need := w.taken + 1
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		// A flush always comes: the loop's, or close's last one.
		for w.flushed < need {
			w.flushedCond.Wait()
		}
	}
}

// write writes one value, logging the first failure of a run of them and
// the recovery; it reports success.
func (w *stateWriter) write(k stateKey, raw []byte) bool {
	var err error
	if raw == nil {
		err = w.st.Delete(k.bucket, k.key)
	} else {
		err = w.st.Put(k.bucket, k.key, json.RawMessage(raw))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil:
		w.instruments.StoreFailed()
		if !w.failing {
			w.logger.Error("writing the state store failed; retrying every second, logged again at recovery",
				"bucket", string(k.bucket), "org", k.key, "err", err)
		}
		w.failing = true
		return false
	case w.failing:
		w.failing = false
		w.logger.Info("writing the state store works again")
	}
	return true
}

func (w *stateWriter) each(b store.Bucket, fn func(key string, raw []byte) error) error {
	if w == nil {
		return nil
	}
	return w.st.Each(b, fn)
}

// start runs the writer until close.
func (w *stateWriter) start() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.running = true
	w.mu.Unlock()
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.wake:
				if !w.flush() {
					select {
					case <-time.After(retryWait):
					case <-w.stop:
					}
				}
			case <-w.stop:
				return
			}
		}
	}()
}

// close stops the writer and writes what is pending.
func (w *stateWriter) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	running := w.running
	w.running = false
	w.mu.Unlock()
	if running {
		close(w.stop)
		<-w.done
	}
	w.flush()
}

// flush writes every pending value; failed ones stay pending unless a newer
// value came meanwhile. It reports whether all succeeded.
func (w *stateWriter) flush() bool {
	if w == nil {
		return true
	}
	w.flushing.Lock()
	defer w.flushing.Unlock()
	w.mu.Lock()
	batch := w.pending
	w.pending = map[stateKey][]byte{}
	w.taken++
	this := w.taken
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.flushed = this
		w.flushedCond.Broadcast()
		w.mu.Unlock()
	}()
	if len(batch) == 0 {
		return true
	}
	var (
		wg     sync.WaitGroup
		slots  = make(chan struct{}, writeParallel)
		failMu sync.Mutex
		failed = map[stateKey][]byte{}
	)
	for k, raw := range batch {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if !w.write(k, raw) {
				failMu.Lock()
				failed[k] = raw
				failMu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) == 0 {
		return true
	}
	w.mu.Lock()
	for k, raw := range failed {
		if _, newer := w.pending[k]; !newer {
			w.pending[k] = raw
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return false
}
