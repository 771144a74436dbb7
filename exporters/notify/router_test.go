package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenwatch/tokenwatch/internal/alerting"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// fakeNotifier records the batches it is given and answers from a script.
type fakeNotifier struct {
	mu    sync.Mutex
	calls [][]alerting.Alert
	// answers are used in order; after the last, every call succeeds.
	answers []answer
	// gate, when set, holds every call until a value is received from it.
	gate chan struct{}
}

type answer struct {
	retry bool
	err   error
}

func (f *fakeNotifier) Notify(ctx context.Context, alerts ...alerting.Alert) (bool, error) {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(alerts))
	if len(f.answers) == 0 {
		return false, nil
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a.retry, a.err
}

// sent lists "status:alertname" of every alert of every call, in order.
func (f *fakeNotifier) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		for _, a := range c {
			out = append(out, a.Status+":"+a.Name())
		}
	}
	return out
}

func alert(name, status string) alerting.Alert {
	return alerting.Alert{Status: status, Labels: map[string]string{"alertname": name, "org": "acme"}}
}

func firing(name string) alerting.Message {
	return alerting.Message{Alert: alert(name, alerting.StatusFiring)}
}
func resolved(name string) alerting.Message {
	return alerting.Message{Alert: alert(name, alerting.StatusResolved)}
}
func resend(name string) alerting.Message {
	return alerting.Message{Alert: alert(name, alerting.StatusFiring), Resend: true}
}

func fastRouter(t *testing.T, reg prometheus.Registerer, capacity int) *Router {
	t.Helper()
	r := NewRouter(RouterOptions{Registerer: reg, QueueCapacity: capacity, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r.Stop(ctx)
	})
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, 5*time.Second, what, cond)
}

// dropped sums the destination's drops over every reason.
func dropped(r *Router, name string) float64 {
	var n float64
	for _, reason := range dropReasons {
		n += testutil.ToFloat64(r.dropped.WithLabelValues(name, reason))
	}
	return n
}

func (r *Router) queueOf(name string) []string {
	r.mu.Lock()
	d := r.dests[name]
	r.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, m := range d.queue.messages() {
		s := m.Alert.Status + ":" + m.Alert.Name()
		if m.Resend {
			s += "(resend)"
		}
		out = append(out, s)
	}
	return out
}

func TestRouterDeliversToEveryDestination(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r := fastRouter(t, reg, 0)
	am1, am2, hook := &fakeNotifier{}, &fakeNotifier{}, &fakeNotifier{}
	added := r.Update([]Destination{
		{Name: "alertmanager/a:9093", Notifier: am1, Resends: true},
		{Name: "alertmanager/b:9093", Notifier: am2, Resends: true},
		{Name: "webhook/hooks.example.com", Notifier: hook},
	})
	if len(added) != 3 {
		t.Errorf("added = %v", added)
	}
	var mu sync.Mutex
	accepted := map[string]int{}
	m := firing("TokenIntrospectionInactive")
	m.Accepted = func(dest string) {
		mu.Lock()
		defer mu.Unlock()
		accepted[dest]++
	}
	r.Send(m)
	r.Send(resend("TokenAcquisitionFailed"))
	waitFor(t, "three acceptances", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) == 3
	})
	waitFor(t, "the re-sends", func() bool { return len(am1.sent()) == 2 && len(am2.sent()) == 2 })
	if got := hook.sent(); !slices.Equal(got, []string{"firing:TokenIntrospectionInactive"}) {
		t.Errorf("webhook got %v; it wants no re-sends", got)
	}
	if got, failed := testutil.ToFloat64(r.total.WithLabelValues("alertmanager/a:9093")), testutil.ToFloat64(r.failed.WithLabelValues("alertmanager/a:9093")); got != 2 || failed != 0 {
		t.Errorf("sent = %v, failed = %v; want 2 sent, none failed", got, failed)
	}
	if n, err := testutil.GatherAndCount(reg, "tokenwatch_notifications_total", "tokenwatch_notifications_failed_total",
		"tokenwatch_notifications_dropped_total", "tokenwatch_notification_queue_length"); err != nil || n != 18 {
		t.Errorf("series = %d (%v), want sent, failed, 3 drop reasons and queue length for each of 3 destinations", n, err)
	}
}

func TestRouterRetriesUntilAccepted(t *testing.T) {
	r := fastRouter(t, nil, 0)
	down := errors.New("HTTP 503: unavailable")
	n := &fakeNotifier{answers: []answer{{true, down}, {true, down}, {true, down}}}
	r.Update([]Destination{{Name: "am", Notifier: n, Resends: true}})
	done := make(chan struct{})
	m := resolved("TokenIntrospectionInactive")
	m.Accepted = func(string) { close(done) }
	r.Send(m)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a resolve was not delivered after the destination came back")
	}
	if got := len(n.sent()); got != 4 {
		t.Errorf("attempts = %d, want 4 (3 failures then success)", got)
	}
	if n, f := testutil.ToFloat64(r.total.WithLabelValues("am")), testutil.ToFloat64(r.failed.WithLabelValues("am")); n != 4 || f != 3 {
		t.Errorf("sent = %v, failed = %v; want 4 sent, 3 failed", n, f)
	}
	if d := dropped(r, "am"); d != 0 {
		t.Errorf("dropped = %v, want 0: failures that were retried are not drops", d)
	}
}

// In a synctest bubble (the fake notifier does no I/O): "no retry ever" is
// checked after ten times the longest backoff has passed, at no real cost.
func TestRouterDoesNotRetryRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := fastRouter(t, nil, 0)
		n := &fakeNotifier{answers: []answer{{false, errors.New("HTTP 400: bad alert")}}}
		r.Update([]Destination{{Name: "am", Notifier: n}})
		r.Send(firing("A"))
		synctest.Wait()
		if got := testutil.ToFloat64(r.dropped.WithLabelValues("am", DropRefused)); got != 1 {
			t.Fatalf("dropped as refused = %v, want 1", got)
		}
		if f, d := testutil.ToFloat64(r.failed.WithLabelValues("am")), dropped(r, "am"); f != 1 || d != 1 {
			t.Errorf("failed = %v, dropped = %v; want one of each, in their own counters", f, d)
		}
		r.Send(firing("B"))
		time.Sleep(10 * r.opts.MaxBackoff)
		synctest.Wait()
		if got := n.sent(); !slices.Equal(got, []string{"firing:A", "firing:B"}) {
			t.Errorf("sent %v: a refused alert must not be retried", got)
		}
	})
}

// A newer state of an alert replaces a queued older one, but a firing
// alert never overtakes a queued resolve.
func TestRouterQueueKeepsOneMessagePerAlertState(t *testing.T) {
	r := fastRouter(t, nil, 0)
	n := &fakeNotifier{gate: make(chan struct{})}
	r.Update([]Destination{{Name: "am", Notifier: n, Resends: true}})
	r.Send(firing("Busy")) // taken by the delivery goroutine, which waits at the gate
	waitFor(t, "the first batch to be in flight", func() bool { return len(r.queueOf("am")) == 0 })

	r.Send(firing("A"), resend("A"))
	r.Send(firing("B"), resolved("B"))
	r.Send(resolved("C"), firing("C"), resend("C"))
	want := []string{"firing:A", "resolved:B", "resolved:C", "firing:C"}
	if got := r.queueOf("am"); !slices.Equal(got, want) {
		t.Errorf("queue = %v, want %v", got, want)
	}
	close(n.gate)
	waitFor(t, "everything to be sent", func() bool { return len(n.sent()) == 5 })
	// resolved:C and firing:C share a fingerprint, so they go in two requests, in order.
	n.mu.Lock()
	calls := len(n.calls)
	last := n.calls[len(n.calls)-1]
	n.mu.Unlock()
	if calls != 3 || len(last) != 1 || last[0].Status != alerting.StatusFiring || last[0].Name() != "C" {
		t.Errorf("calls = %d, last = %v; want the firing C after the batch holding its resolve", calls, last)
	}
}

func TestRouterFullQueueDropsFiringNeverResolves(t *testing.T) {
	r := fastRouter(t, nil, 3)
	n := &fakeNotifier{gate: make(chan struct{})}
	r.Update([]Destination{{Name: "am", Notifier: n, Resends: true}})
	r.Send(firing("Busy"))
	waitFor(t, "the first batch to be in flight", func() bool { return len(r.queueOf("am")) == 0 })

	steps := []struct {
		send alerting.Message
		want []string
	}{
		{firing("A"), []string{"firing:A"}},
		{resend("B"), []string{"firing:A", "firing:B(resend)"}},
		{resolved("C"), []string{"firing:A", "firing:B(resend)", "resolved:C"}},
		// Full: the oldest re-send goes first.
		{resolved("D"), []string{"firing:A", "resolved:C", "resolved:D"}},
		// Full, no queued re-send, the new one is a re-send: it is dropped.
		{resend("E"), []string{"firing:A", "resolved:C", "resolved:D"}},
		// Full: a new firing alert pushes out the oldest firing one.
		{firing("F"), []string{"resolved:C", "resolved:D", "firing:F"}},
		{resolved("G"), []string{"resolved:C", "resolved:D", "resolved:G"}},
		// Only resolves: a firing alert cannot get in, a resolve always can.
		{firing("H"), []string{"resolved:C", "resolved:D", "resolved:G"}},
		{resolved("I"), []string{"resolved:C", "resolved:D", "resolved:G", "resolved:I"}},
	}
	for i, s := range steps {
		r.Send(s.send)
		if got := r.queueOf("am"); !slices.Equal(got, s.want) {
			t.Fatalf("step %d: queue = %v, want %v", i, got, s.want)
		}
	}
	if d := testutil.ToFloat64(r.dropped.WithLabelValues("am", DropQueueFull)); d != 5 || dropped(r, "am") != 5 {
		t.Errorf("dropped for a full queue = %v, want 5 (B, E, A, F, H)", d)
	}
	if q := testutil.ToFloat64(r.queued.WithLabelValues("am")); q != 4 {
		t.Errorf("queue length gauge = %v, want 4", q)
	}
	close(n.gate)
}

// A destination that hangs holds up neither Send nor the other destinations.
func TestRouterNeverBlocksOnADestination(t *testing.T) {
	r := fastRouter(t, nil, 2000)
	stuck := &fakeNotifier{gate: make(chan struct{})}
	fine := &fakeNotifier{}
	r.Update([]Destination{{Name: "stuck", Notifier: stuck}, {Name: "fine", Notifier: fine}})
	start := time.Now()
	for i := range 1000 {
		r.Send(firing(fmt.Sprintf("A%d", i)))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1000 sends took %s with one destination stuck", d)
	}
	waitFor(t, "the healthy destination to get its alerts", func() bool { return len(fine.sent()) == 1000 })
	close(stuck.gate)
}

// A reload that keeps a destination's name keeps its queue and uses the new
// notifier; a destination no longer configured disappears from the metrics.
func TestRouterUpdateKeepsQueues(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r := fastRouter(t, reg, 0)
	old := &fakeNotifier{answers: []answer{{true, errors.New("HTTP 401")}}, gate: make(chan struct{})}
	r.Update([]Destination{{Name: "am", Notifier: old, Resends: true}, {Name: "gone", Notifier: &fakeNotifier{}}})
	r.Send(firing("A"), resolved("B"))
	waitFor(t, "the first batch in flight", func() bool { return len(r.queueOf("am")) == 0 })

	renewed := &fakeNotifier{}
	if added := r.Update([]Destination{{Name: "am", Notifier: renewed, Resends: true}}); len(added) != 0 {
		t.Errorf("added = %v, want none", added)
	}
	old.gate <- struct{}{} // the attempt in flight fails (retry) and is queued again
	waitFor(t, "delivery through the new notifier", func() bool { return len(renewed.sent()) == 2 })
	if got := renewed.sent(); !slices.Contains(got, "firing:A") || !slices.Contains(got, "resolved:B") {
		t.Errorf("the new notifier sent %v", got)
	}
	waitFor(t, "the removed destination's series to vanish", func() bool {
		n, _ := testutil.GatherAndCount(reg, "tokenwatch_notification_queue_length")
		return n == 1
	})
}

func TestRouterStopDrainsQueues(t *testing.T) {
	r := NewRouter(RouterOptions{MinBackoff: time.Millisecond})
	n := &fakeNotifier{}
	r.Update([]Destination{{Name: "am", Notifier: n}})
	for i := range 50 {
		r.Send(resolved(fmt.Sprintf("A%d", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.Stop(ctx)
	if got := len(n.sent()); got != 50 {
		t.Errorf("delivered %d of 50 queued resolves before stopping", got)
	}

	// A destination that is down is given up when the grace is over.
	r = NewRouter(RouterOptions{MinBackoff: time.Millisecond})
	down := &fakeNotifier{answers: slices.Repeat([]answer{{true, errors.New("HTTP 503")}}, 1e6)}
	r.Update([]Destination{{Name: "am", Notifier: down}})
	r.Send(resolved("A"))
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	r.Stop(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %s", d)
	}
	if d := testutil.ToFloat64(r.dropped.WithLabelValues("am", DropShutdown)); d != 1 || dropped(r, "am") != 1 {
		t.Errorf("dropped at shutdown = %v, want 1", d)
	}
}

// A resolve that failed once while the destination is up again must not wait
// out a backoff longer than the shutdown grace: draining retries at once.
func TestRouterStopCutsBackoffShort(t *testing.T) {
	r := NewRouter(RouterOptions{MinBackoff: time.Minute, MaxBackoff: time.Minute})
	n := &fakeNotifier{answers: []answer{{true, errors.New("HTTP 503")}}}
	r.Update([]Destination{{Name: "webhook", Notifier: n}})
	r.Send(resolved("A"))
	waitFor(t, "the failed attempt to be queued again", func() bool {
		return len(n.sent()) == 1 && len(r.queueOf("webhook")) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r.Stop(ctx)
	if got := n.sent(); !slices.Equal(got, []string{"resolved:A", "resolved:A"}) {
		t.Errorf("sent %v; the queued resolve was not retried at shutdown", got)
	}
	if d := dropped(r, "webhook"); d != 0 {
		t.Errorf("dropped at shutdown = %v, want 0", d)
	}
}

// The wait between retries doubles from MinBackoff, each drawn within
// ±20% of its interval (jitter), never above MaxBackoff, and starts again
// from MinBackoff after a reset (a success, or draining at shutdown).
func TestRetryBackoffDoublesWithJitterUpToMax(t *testing.T) {
	const minWait, maxWait = 100 * time.Millisecond, time.Second
	firsts := map[time.Duration]bool{}
	for range 200 {
		b := newRetryBackoff(minWait, maxWait)
		for round := range 2 {
			interval := minWait
			for attempt := range 8 {
				got := b.next()
				lo, hi := time.Duration(float64(interval)*(1-backoffJitter)), min(time.Duration(float64(interval)*(1+backoffJitter))+1, maxWait)
				if got < lo || got > hi {
					t.Fatalf("round %d, attempt %d: wait %s, want within [%s, %s]", round, attempt, got, lo, hi)
				}
				if attempt == 0 {
					firsts[got] = true
				}
				interval = min(2*interval, maxWait)
			}
			b.reset()
		}
	}
	if len(firsts) < 50 {
		t.Errorf("only %d distinct first waits in 400 draws: no jitter", len(firsts))
	}
}

func TestDestinationNameHasNoCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:9093":                                 "alertmanager/127.0.0.1:9093/",
		"https://user:pass@AM.example.com/prefix?token=abc":     "alertmanager/am.example.com/",
		"https://hooks.example.com/services/T000/B000/XXXXXXXX": "alertmanager/hooks.example.com/",
	} {
		got := DestinationName("alertmanager", in)
		if !strings.HasPrefix(got, want) || len(got) != len(want)+8 {
			t.Errorf("DestinationName(%q) = %q, want %s and 8 hex digits", in, got, want)
		}
		for _, secret := range []string{"pass", "abc", "XXXX", "prefix", "services"} {
			if strings.Contains(got, secret) {
				t.Errorf("DestinationName(%q) leaks %q", in, secret)
			}
		}
	}
	if got := DestinationName("alertmanager", "::"); got != "alertmanager/invalid-url" {
		t.Errorf("DestinationName(::) = %q", got)
	}
}

// Two destinations on one host have different names that do not depend on
// their order; spellings of one URL, or a rotated password, keep the name.
func TestDestinationNameIsStable(t *testing.T) {
	a := DestinationName("webhook", "https://hooks.example.com/T0/B0/one")
	b := DestinationName("webhook", "https://hooks.example.com/T0/B0/two")
	if a == b {
		t.Errorf("two webhooks on one host share the name %q", a)
	}
	if again := DestinationName("webhook", "https://hooks.example.com/T0/B0/two"); again != b {
		t.Errorf("the name changed: %q, then %q", b, again)
	}
	same := DestinationName("alertmanager", "http://am:pw1@127.0.0.1:9093")
	for _, u := range []string{"http://am:pw2@127.0.0.1:9093/", "HTTP://127.0.0.1:9093", "https://AM.example.com:443/x/"} {
		n := DestinationName("alertmanager", u)
		if u == "https://AM.example.com:443/x/" {
			if n != DestinationName("alertmanager", "https://am.example.com:443/x") || n == DestinationName("alertmanager", "https://am.example.com/y") {
				t.Errorf("DestinationName(%q) = %q", u, n)
			}
			continue
		}
		if n != same {
			t.Errorf("DestinationName(%q) = %q, want %q", u, n, same)
		}
	}
}

func TestFingerprintIsAlertmanagers(t *testing.T) {
	// The fingerprint Alertmanager shows for {alertname="A", org="acme"}.
	a := alerting.Fingerprint(map[string]string{"alertname": "A", "org": "acme"})
	b := alerting.Fingerprint(map[string]string{"org": "acme", "alertname": "A"})
	c := alerting.Fingerprint(map[string]string{"alertname": "A", "org": "acme2"})
	if a != b || a == c || len(a) != 16 {
		t.Errorf("fingerprints %s %s %s", a, b, c)
	}
}
