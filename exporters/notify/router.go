package notify

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// Defaults of RouterOptions.
const (
	DefaultQueueCapacity = 10000
	DefaultMaxBatch      = 64
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 15 * time.Second
)

// The delivery metrics count alerts, not requests, as Alertmanager's do:
// tokenwatch_notifications_total the alerts of every attempt (retries
// included), tokenwatch_notifications_failed_total those of the attempts
// that failed, and tokenwatch_notifications_dropped_total the alerts given
// up, by reason. Accepted alerts are total minus failed; a failed attempt
// is retried, so a failure is not a loss: a drop is.

// Values of the reason label of tokenwatch_notifications_dropped_total.
const (
	// DropRefused: the destination refused the alert for good (a 4xx other
	// than 429), so it is not retried.
	DropRefused = "refused"
	// DropQueueFull: pushed out of a full queue, or not let in (see Router).
	DropQueueFull = "queue_full"
	// DropShutdown: still queued, or in flight, when tokenwatch shut down
	// after its grace period or a reload removed the destination.
	DropShutdown = "shutdown"
)

// dropReasons are the values of the reason label, each exported from the
// start so that a rate over them starts from zero.
var dropReasons = []string{DropRefused, DropQueueFull, DropShutdown}

// backoffJitter is how far, as a fraction, a wait between retries is drawn
// around the doubling interval, so that tokenwatch instances (shards) whose
// Alertmanager comes back do not all retry in the same instant.
const backoffJitter = 0.2

// Destination is one place alerts go.
type Destination struct {
	// Name identifies the destination in metrics and logs and across
	// reloads; it must hold no credential (see DestinationName).
	Name     string
	Notifier Notifier
	// Resends says whether the destination wants the periodic re-sends of
	// firing alerts: Alertmanager does (they keep an alert from expiring),
	// a webhook does not (it would hear of every alert every minute).
	Resends bool
}

// RouterOptions configure a Router. Zero values take the defaults.
type RouterOptions struct {
	// Registerer receives the delivery metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// QueueCapacity bounds each destination's queue; see Router.
	QueueCapacity int
	// MaxBatch is the most alerts sent in one request.
	MaxBatch int
	// MinBackoff is the wait before the first retry, and MaxBackoff the
	// longest: the wait doubles after each further failed attempt, drawn
	// at random within ±20% (jitter), and never exceeds MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// Router hands every alert to every destination, each through its own
// bounded queue and delivery goroutine, so a destination that is down delays
// only its own notifications and never blocks the caller.
//
// A destination's queue holds at most one message per alert and state: a
// newer firing message replaces a queued one of the same alert (fingerprint),
// and a resolve replaces a queued firing one; a firing message never replaces
// a queued resolve but queues behind it. Failed attempts are retried with
// exponential backoff and jitter (cenkalti/backoff, as Alertmanager uses)
// when the destination is down or overloaded (network errors, 429, 5xx)
// and dropped when it refused them (other 4xx).
//
// When a queue is full, room is made by dropping, in this order: the oldest
// queued re-send of a firing alert; the new message itself if it is a
// re-send; the oldest queued firing alert. A resolve is never dropped for
// room: a queue of resolves only grows past its capacity (by at most one
// message per alert), so a destination that comes back learns of every
// resolve.
type Router struct {
	opts    RouterOptions
	logger  *slog.Logger
	total   *prometheus.CounterVec
	failed  *prometheus.CounterVec
	dropped *prometheus.CounterVec
	queued  *prometheus.GaugeVec

	mu      sync.Mutex
	dests   map[string]*dispatcher
	order   []string
	stopped bool
	// retiring tracks the destinations an Update removed until they end.
	retiring sync.WaitGroup
}

// NewRouter returns a Router with no destinations; give it some with Update.
func NewRouter(opts RouterOptions) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.QueueCapacity <= 0 {
		opts.QueueCapacity = DefaultQueueCapacity
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &Router{
		opts:   opts,
		logger: opts.Logger,
		total: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwatch_notifications_total",
			Help: "Alerts sent to a destination: the alerts of every attempt, retries included.",
		}, []string{"destination"}),
		failed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwatch_notifications_failed_total",
			Help: "Alerts of the attempts that failed; they are retried unless the destination refused them, which drops them.",
		}, []string{"destination"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwatch_notifications_dropped_total",
			Help: "Alerts given up for a destination, by reason: refused (not retried), queue_full, shutdown (still queued when tokenwatch stopped or the destination was removed).",
		}, []string{"destination", "reason"}),
		queued: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenwatch_notification_queue_length",
			Help: "Alerts waiting to be sent to a destination.",
		}, []string{"destination"}),
		dests: map[string]*dispatcher{},
	}
}

// Update makes dests the destinations. A destination whose name was there
// before keeps its queue and takes the new notifier (new credentials, say);
// a new one starts empty; one no longer named stops, and what it still had
// queued is dropped. It returns the names of the new destinations.
func (r *Router) Update(dests []Destination) (added []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil
	}
	keep := map[string]bool{}
	var order []string
	for _, d := range dests {
		if keep[d.Name] {
			r.logger.Warn("two alert destinations have the same name; the second is ignored", "destination", d.Name)
			continue
		}
		keep[d.Name] = true
		order = append(order, d.Name)
		if old, ok := r.dests[d.Name]; ok {
			old.update(d)
			continue
		}
		r.dests[d.Name] = r.newDispatcher(d)
		added = append(added, d.Name)
	}
	for name, d := range r.dests {
		if keep[name] {
			continue
		}
		delete(r.dests, name)
		d.cancel()
		// Tracked, so Stop returns only when this one has ended too.
		r.retiring.Go(func() {
			<-d.done
			r.mu.Lock()
			defer r.mu.Unlock()
			if _, back := r.dests[name]; !back {
				r.total.DeleteLabelValues(name)
				r.failed.DeleteLabelValues(name)
				for _, reason := range dropReasons {
					r.dropped.DeleteLabelValues(name, reason)
				}
				r.queued.DeleteLabelValues(name)
			}
		})
	}
	r.order = order
	return added
}

// Destinations returns the destination names in configuration order.
func (r *Router) Destinations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// Send queues the messages for every destination. It never blocks on a
// destination.
func (r *Router) Send(msgs ...alerting.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range r.order {
		r.dests[name].enqueue(msgs)
	}
}

// SendTo queues the messages for the named destinations only, e.g. the
// alerts already firing for a destination that was just added.
func (r *Router) SendTo(names []string, msgs ...alerting.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range names {
		if d, ok := r.dests[name]; ok {
			d.enqueue(msgs)
		}
	}
}

// Stop delivers what is queued until ctx is done, then gives up the rest.
func (r *Router) Stop(ctx context.Context) {
	r.mu.Lock()
	r.stopped = true
	ds := make([]*dispatcher, 0, len(r.dests))
	for _, d := range r.dests {
		ds = append(ds, d)
	}
	r.mu.Unlock()
	for _, d := range ds {
		d.drain()
	}
	for _, d := range ds {
		select {
		case <-d.done:
		case <-ctx.Done():
			d.cancel()
			<-d.done
		}
	}
	r.retiring.Wait()
}

func (r *Router) newDispatcher(dest Destination) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	d := &dispatcher{
		name:     dest.Name,
		r:        r,
		logger:   r.logger.With("destination", dest.Name),
		ctx:      ctx,
		cancel:   cancel,
		wake:     make(chan struct{}, 1),
		draining: make(chan struct{}),
		done:     make(chan struct{}),
		notifier: dest.Notifier,
		resends:  dest.Resends,
	}
	r.total.WithLabelValues(dest.Name)
	r.failed.WithLabelValues(dest.Name)
	for _, reason := range dropReasons {
		r.dropped.WithLabelValues(dest.Name, reason)
	}
	r.queued.WithLabelValues(dest.Name).Set(0)
	go d.run()
	return d
}

// dispatcher is one destination's queue and delivery goroutine.
type dispatcher struct {
	name   string
	r      *Router
	logger *slog.Logger
	// ctx ends attempts in flight when the destination is removed or the
	// shutdown grace is over.
	ctx       context.Context
	cancel    context.CancelFunc
	wake      chan struct{}
	draining  chan struct{}
	drainOnce sync.Once
	done      chan struct{}

	mu       sync.Mutex
	notifier Notifier
	resends  bool
	queue    queue
	// failing is true from a failed attempt to the next success, so that a
	// destination that is down is logged once, not at every retry.
	failing bool
}

func (d *dispatcher) update(dest Destination) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notifier = dest.Notifier
	d.resends = dest.Resends
}

func (d *dispatcher) drain() { d.drainOnce.Do(func() { close(d.draining) }) }

// drop counts n alerts given up for reason.
func (d *dispatcher) drop(reason string, n int) {
	if n > 0 {
		d.r.dropped.WithLabelValues(d.name, reason).Add(float64(n))
	}
}

func (d *dispatcher) enqueue(msgs []alerting.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range msgs {
		if m.Resend && !d.resends {
			continue
		}
		if m.Alert.Fingerprint == "" {
			m.Alert.Fingerprint = alerting.Fingerprint(m.Alert.Labels)
		}
		d.addLocked(m)
	}
	d.queuedChangedLocked()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) addLocked(m alerting.Message) {
	// The latest queued message of the same alert decides.
	if q := d.queue.latest(m.Alert.Fingerprint); q != nil {
		// A firing alert never overtakes a resolve: it queues behind it.
		if !q.msg.Alert.Resolved() || m.Alert.Resolved() {
			m.Resend = m.Resend && q.msg.Resend
			d.queue.replace(q, m)
			return
		}
	}
	if d.queue.len() >= d.r.opts.QueueCapacity && !d.makeRoomLocked(m) {
		d.drop(DropQueueFull, 1)
		d.logger.Warn("alert queue full; dropped a firing alert re-send", "alertname", m.Alert.Name())
		return
	}
	d.queue.pushBack(m)
}

// makeRoomLocked applies the drop policy (see Router) for the incoming
// message m. It reports false when m itself is to be dropped.
func (d *dispatcher) makeRoomLocked(m alerting.Message) bool {
	drop := func(e *entry) bool {
		d.drop(DropQueueFull, 1)
		d.logger.Warn("alert queue full; dropped the oldest queued firing alert", "alertname", e.msg.Alert.Name())
		d.queue.remove(e)
		return true
	}
	if e := d.queue.oldestResend(); e != nil {
		return drop(e)
	}
	if m.Resend && !m.Alert.Resolved() {
		return false
	}
	if e := d.queue.oldestFiring(); e != nil {
		return drop(e)
	}
	return m.Alert.Resolved()
}

func (d *dispatcher) queuedChangedLocked() {
	d.r.queued.WithLabelValues(d.name).Set(float64(d.queue.len()))
}

// next waits for queued messages and takes a batch of them, at most one per
// alert. It returns nil when the dispatcher is to stop.
func (d *dispatcher) next() ([]alerting.Message, Notifier) {
	for {
		d.mu.Lock()
		if d.ctx.Err() != nil {
			d.drop(DropShutdown, d.queue.len())
			d.queue.clear()
			d.queuedChangedLocked()
			d.mu.Unlock()
			return nil, nil
		}
		if d.queue.len() > 0 {
			var batch []alerting.Message
			seen := map[string]bool{}
			for e := d.queue.front(); e != nil && len(batch) < d.r.opts.MaxBatch && !seen[e.msg.Alert.Fingerprint]; e = d.queue.front() {
				seen[e.msg.Alert.Fingerprint] = true
				batch = append(batch, e.msg)
				d.queue.remove(e)
			}
			d.queuedChangedLocked()
			n2 := d.notifier
			d.mu.Unlock()
			return batch, n2
		}
		d.mu.Unlock()
		select {
		case <-d.wake:
		case <-d.ctx.Done():
		case <-d.draining:
			d.mu.Lock()
			empty := d.queue.len() == 0
			d.mu.Unlock()
			if empty {
				return nil, nil
			}
		}
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
	defer d.cancel()
	wait := newRetryBackoff(d.r.opts.MinBackoff, d.r.opts.MaxBackoff)
	// draining cuts one backoff short: at shutdown the grace period is
	// shorter than MaxBackoff, and a queued resolve must not wait it out.
	// After that the channel is nil and the backoff runs its course again,
	// so a destination that is still down is not retried in a busy loop.
	draining := d.draining
	for {
		batch, notifier := d.next()
		if batch == nil {
			return
		}
		alerts := make([]alerting.Alert, len(batch))
		for i, m := range batch {
			alerts[i] = m.Alert
		}
		d.r.total.WithLabelValues(d.name).Add(float64(len(batch)))
		retry, err := notifier.Notify(d.ctx, alerts...)
		if err == nil {
			d.mu.Lock()
			recovered := d.failing
			d.failing = false
			d.mu.Unlock()
			if recovered {
				d.logger.Info("alert destination accepts notifications again", "alerts", len(batch))
			}
			for _, m := range batch {
				if m.Accepted != nil {
					m.Accepted(d.name)
				}
			}
			wait.reset()
			continue
		}
		d.r.failed.WithLabelValues(d.name).Add(float64(len(batch)))
		if d.ctx.Err() != nil {
			d.drop(DropShutdown, len(batch))
			continue
		}
		if !retry {
			d.drop(DropRefused, len(batch))
			d.logger.Error("alert destination refused the notification; not retried", "alerts", len(batch), "err", err)
			continue
		}
		d.mu.Lock()
		first := !d.failing
		d.failing = true
		d.requeueLocked(batch)
		d.mu.Unlock()
		backoff := wait.next()
		if first {
			d.logger.Warn("sending alerts failed; retrying with backoff", "alerts", len(batch), "err", err, "backoff", backoff)
		} else {
			d.logger.Debug("sending alerts failed again", "alerts", len(batch), "err", err, "backoff", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-draining:
			t.Stop()
			draining = nil
			wait.reset()
		case <-d.ctx.Done():
			t.Stop()
		}
	}
}

// requeueLocked puts a failed batch back at the front, minus the messages
// that newer ones of the same alert superseded meanwhile.
func (d *dispatcher) requeueLocked(batch []alerting.Message) {
	var keep []alerting.Message
	for _, m := range batch {
		superseded := false
		for _, q := range d.queue.queued(m.Alert.Fingerprint) {
			if !m.Alert.Resolved() || q.msg.Alert.Resolved() {
				superseded = true
				break
			}
		}
		if !superseded {
			keep = append(keep, m)
		}
	}
	d.queue.pushFront(keep)
	for d.queue.len() > d.r.opts.QueueCapacity {
		e := d.queue.oldestResend()
		if e == nil {
			e = d.queue.oldestFiring()
		}
		if e == nil {
			break
		}
		d.drop(DropQueueFull, 1)
		d.queue.remove(e)
	}
	d.queuedChangedLocked()
}

// retryBackoff is the wait between attempts at a destination that is down:
// exponential with jitter, from MinBackoff doubling after each failed
// attempt, each wait drawn within ±backoffJitter of the interval and never
// above MaxBackoff. Used by one delivery goroutine only.
type retryBackoff struct {
	exp *backoff.ExponentialBackOff
	max time.Duration
}

func newRetryBackoff(minWait, maxWait time.Duration) *retryBackoff {
	exp := &backoff.ExponentialBackOff{
		InitialInterval:     minWait,
		RandomizationFactor: backoffJitter,
		Multiplier:          2,
		MaxInterval:         maxWait,
	}
	exp.Reset()
	return &retryBackoff{exp: exp, max: maxWait}
}

// next returns the wait before the next attempt and lengthens the one after.
func (b *retryBackoff) next() time.Duration { return min(b.exp.NextBackOff(), b.max) }

// reset starts again from MinBackoff, after a success.
func (b *retryBackoff) reset() { b.exp.Reset() }
