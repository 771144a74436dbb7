package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// memSim is a simulated org served in memory, through the checkers'
// transport: no socket, so that inside a synctest bubble every wait is one
// the bubble sees, and time moves only when everything waits.
type memSim struct {
	org *orgsim.Org
}

func newMemSim(apps ...string) *memSim {
	s := &memSim{org: orgsim.New(orgsim.Options{})}
	s.org.AddUser(orgsim.User{Username: "u@example.com", Password: "p"})
	for _, a := range apps {
		s.org.AddApp(orgsim.App{ClientID: a, ClientSecret: "secret-" + a, RunAsUser: "u@example.com"})
	}
	return s
}

// RoundTrip answers a request with the org's handler.
func (s *memSim) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	s.org.Handler().ServeHTTP(rec, r)
	res := rec.Result()
	res.Request = r
	return res, nil
}

// newChecker builds checkers that reach the simulated org in memory.
func (s *memSim) newChecker(t checks.Target, opts ...checks.Option) *checks.Checker {
	return checks.NewChecker(t, append(opts, checks.WithTransport(s))...)
}

// config is a configuration of client-credentials orgs on a loopback URL
// (nothing listens there: the requests go to memSim).
func (s *memSim) config(t testing.TB, global string, orgs ...string) *configs.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  schedule: \"@every 1m\"\n%s\norgs:\n", global)
	for _, o := range orgs {
		name, extra, _ := strings.Cut(o, "|")
		fmt.Fprintf(&b, "  - name: %s\n    url: http://127.0.0.1:1\n    client: {id: %s, secret: secret-%s}\n    grant: {type: client_credentials}\n%s\n",
			name, name, name, extra)
	}
	cfg, err := configs.Parse([]byte(b.String()), t.TempDir(), nil)
	if err != nil {
		t.Fatalf("config:\n%s\n%v", b.String(), err)
	}
	return cfg
}

// starts records when each org's checks started, in the order they finished.
type starts struct {
	mu  sync.Mutex
	all []run
}

type run struct {
	org string
	at  time.Time
}

func (s *starts) Observe(info checks.Info, res *checks.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, run{info.Name, res.Start})
}

func (s *starts) runs() []run {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.all)
}

// firstRuns keeps the first run of each org.
func firstRuns(runs []run) []run {
	seen := map[string]bool{}
	var out []run
	for _, r := range runs {
		if !seen[r.org] {
			seen[r.org] = true
			out = append(out, r)
		}
	}
	return out
}

// lateness records the scheduling lateness of every dispatched check.
type lateness struct {
	noInstruments
	mu   sync.Mutex
	seen []time.Duration
}

func (l *lateness) CheckLate(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, d)
}

func (l *lateness) all() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(slices.Values(l.seen))
}

// Each org runs at its own slot of its schedule, every interval, and the
// checks start in the order they are due.
func TestDispatchRunsEachOrgAtItsSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		names := []string{"a", "b", "c", "d"}
		sim := newMemSim(names...)
		rec := &starts{}
		late := &lateness{}
		ag := New(Options{NewChecker: sim.newChecker, Observers: []Observer{rec}, Instruments: late})
		ag.Start()
		defer ag.Stop(context.Background())
		t0 := time.Now().UTC()
		if err := ag.Apply(sim.config(t, "", names...)); err != nil {
			t.Fatal(err)
		}
		end := t0.Add(3 * time.Minute)
		var want []run
		for _, n := range names {
			s, err := spreadSchedule("@every 1m", n)
			if err != nil {
				t.Fatal(err)
			}
			for at := s.Next(t0); !at.After(end); at = s.Next(at) {
				want = append(want, run{n, at})
			}
		}
		slices.SortFunc(want, func(x, y run) int { return x.at.Compare(y.at) })
		time.Sleep(time.Until(end))
		synctest.Wait()
		got := rec.runs()
		if len(got) != len(want) {
			t.Fatalf("%d runs in 3 minutes of 4 orgs @every 1m, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
		}
		for i := range want {
			if got[i].org != want[i].org || !got[i].at.Equal(want[i].at) {
				t.Fatalf("run %d: %s at %s, want %s at %s (the org's slot)", i, got[i].org, got[i].at, want[i].org, want[i].at)
			}
		}
		if l := late.all(); len(l) != len(want) || l[len(l)-1] != 0 {
			t.Errorf("lateness %v, want %d runs on time", l, len(want))
		}
	})
}

// A run due while the org's previous one still goes on is skipped, and the
// skipped runs are not made up afterwards.
func TestDispatchSkipsARunWhileThePreviousGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newMemSim("slow")
		hold := make(chan struct{})
		sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold, Remaining: 1})
		rec := &starts{}
		ag := New(Options{NewChecker: sim.newChecker, Observers: []Observer{rec}})
		ag.Start()
		defer ag.Stop(context.Background())
		cfg := sim.config(t, "", "slow|    schedule: \"@every 1s\"")
		if err := ag.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		s, _ := spreadSchedule("@every 1s", "slow")
		first := s.Next(time.Now().UTC())
		// The first run is held at the token endpoint over three more slots.
		time.Sleep(time.Until(first) + 3500*time.Millisecond)
		synctest.Wait()
		if n := sim.org.Requests(orgsim.EndpointToken); n != 1 {
			t.Fatalf("%d logins while the first run was held, want 1: the runs due meanwhile must be skipped", n)
		}
		close(hold)
		synctest.Wait()
		if got := rec.runs(); len(got) != 1 || !got[0].at.Equal(first) {
			t.Fatalf("runs %v, want the held one, started at %s", got, first)
		}
		// The next slot after the release runs, once.
		time.Sleep(time.Second)
		synctest.Wait()
		if got := rec.runs(); len(got) != 2 {
			t.Fatalf("runs %v one slot after the release, want 2: the skipped runs are not made up", got)
		}
	})
}

// Orgs added together run their first check spread over a window that
// grows with their number: 500 over 1 s, five at once. Lateness
// (start minus due time) stays zero: nothing waits behind a burst.
func TestFirstRunsSpreadOverAWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		names := make([]string, 500)
		for i := range names {
			names[i] = fmt.Sprintf("org-%04d", i)
		}
		sim := newMemSim(names...)
		rec := &starts{}
		late := &lateness{}
		ag := New(Options{NewChecker: sim.newChecker, Observers: []Observer{rec}, Instruments: late, RunOnStart: true})
		ag.Start()
		defer ag.Stop(context.Background())
		t0 := time.Now().UTC()
		if err := ag.Apply(sim.config(t, "", names...)); err != nil {
			t.Fatal(err)
		}
		window := firstRunWindow(len(names), time.Minute)
		if window != time.Second {
			t.Fatalf("window for 500 orgs: %s, want 1s", window)
		}
		time.Sleep(window)
		synctest.Wait()
		got := rec.runs()
		if len(got) != len(names) || len(firstRuns(got)) != len(names) {
			t.Fatalf("%d checks of %d orgs within the window, want one of each: an org whose regular run falls in the window runs there, once", len(got), len(firstRuns(got)))
		}
		perTenth := map[time.Duration]int{}
		for _, r := range got {
			d := r.at.Sub(t0)
			if d < 0 || d >= window {
				t.Fatalf("%s first ran %s after the Apply, want within [0, %s)", r.org, d, window)
			}
			perTenth[d.Truncate(100*time.Millisecond)]++
		}
		busiest := 0
		for _, n := range perTenth {
			busiest = max(busiest, n)
		}
		// 500 over 10 tenths is 50 a tenth; all at once would be 500.
		if busiest > 80 {
			t.Errorf("%d first runs in the busiest tenth of a second: not spread (%v)", busiest, perTenth)
		}
		if l := late.all(); l[len(l)-1] != 0 {
			t.Errorf("lateness up to %s at start, want none", l[len(l)-1])
		}

		// Five more orgs added by a reload run at once.
		t1 := time.Now().UTC()
		more := append(slices.Clone(names), "new-1", "new-2", "new-3", "new-4", "new-5")
		for _, n := range more[len(names):] {
			sim.org.AddApp(orgsim.App{ClientID: n, ClientSecret: "secret-" + n, RunAsUser: "u@example.com"})
		}
		if err := ag.Apply(sim.config(t, "", more...)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		added := 0
		for _, r := range firstRuns(rec.runs()) {
			if strings.HasPrefix(r.org, "new-") {
				added++
				if d := r.at.Sub(t1); d < 0 || d >= 10*time.Millisecond {
					t.Errorf("%s first ran %s after its reload, want within 10ms", r.org, d)
				}
			}
		}
		if added != 5 {
			t.Errorf("%d of the 5 added orgs ran within 10ms of the reload", added)
		}
	})
}

// After a restart, an org whose stored result is younger than its interval
// waits for its regular slot; an org without one runs at once.
func TestFreshStoredResultWaitsForItsSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newMemSim("kept", "new")
		st := openStore(t, t.TempDir())
		defer st.Close()
		first := New(Options{NewChecker: sim.newChecker, Store: st, RunOnStart: true})
		first.Start()
		if err := first.Apply(sim.config(t, "", "kept")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if first.Last()["kept"] == nil {
			t.Fatal("no first check before the restart")
		}
		first.Stop(context.Background())

		time.Sleep(10 * time.Second)
		rec := &starts{}
		ag := New(Options{NewChecker: sim.newChecker, Store: st, RunOnStart: true, Observers: []Observer{rec}})
		ag.Start()
		defer ag.Stop(context.Background())
		t0 := time.Now().UTC()
		if err := ag.Apply(sim.config(t, "", "kept", "new")); err != nil {
			t.Fatal(err)
		}
		slot, _ := spreadSchedule("@every 1m", "kept")
		time.Sleep(time.Minute)
		synctest.Wait()
		got := firstRuns(rec.runs())
		for _, r := range got {
			switch {
			case r.org == "new" && r.at.Sub(t0) >= firstRunWindow(1, time.Minute):
				t.Errorf("new org first ran %s after start, want at once", r.at.Sub(t0))
			case r.org == "kept" && !r.at.Equal(slot.Next(t0)):
				t.Errorf("kept org (result 11s old, interval 1m) first ran at %s, want its slot %s", r.at, slot.Next(t0))
			}
		}
		if len(got) != 2 {
			t.Errorf("orgs run in the first minute after the restart: %v, want both", got)
		}
	})
}

// Lateness includes the wait for a slot: with one slot and checks of 1 s,
// three orgs due together start 0, 1 and 2 s late.
func TestLatenessIncludesTheSlotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newMemSim("a", "b", "c")
		sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Latency: time.Second})
		late := &lateness{}
		ag := New(Options{NewChecker: sim.newChecker, Instruments: late, RunOnStart: true})
		ag.Start()
		defer ag.Stop(context.Background())
		if err := ag.Apply(sim.config(t, "  max_concurrent_checks: 1", "a", "b", "c")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		l := late.all()
		// The three first runs fall within 6 ms of each other (3 x 2 ms).
		if len(l) != 3 || l[0] > 6*time.Millisecond || l[1] < 994*time.Millisecond || l[2] < 1994*time.Millisecond {
			t.Fatalf("lateness %v, want about 0, 1s and 2s", l)
		}
	})
}

// An Apply after Stop is refused and starts nothing: no goroutine, no
// entry in the timetable.
func TestApplyAfterStopStartsNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sim := newMemSim("a", "b")
	ag := New(Options{NewChecker: sim.newChecker, RunOnStart: true})
	ag.Start()
	if err := ag.Apply(sim.config(t, "", "a")); err != nil {
		t.Fatal(err)
	}
	ag.Stop(context.Background())
	logins := sim.org.Requests(orgsim.EndpointToken)
	if err := ag.Apply(sim.config(t, "", "a", "b")); err == nil {
		t.Fatal("Apply after Stop accepted")
	}
	ag.Start()
	if n := ag.timetable.len(); n != 1 {
		t.Errorf("%d orgs in the timetable after a refused Apply, want 1", n)
	}
	if got := stateNames(ag); !slices.Equal(got, []string{"a"}) {
		t.Errorf("orgs %v after a refused Apply, want [a]", got)
	}
	time.Sleep(50 * time.Millisecond)
	if n := sim.org.Requests(orgsim.EndpointToken); n != logins {
		t.Errorf("%d logins after Stop, want none", n-logins)
	}
}

// An idle org costs a timetable entry, not a goroutine.
func TestIdleOrgsHoldNoGoroutine(t *testing.T) {
	// Once a day: hardly any is due during the test.
	orgs := make([]string, 2000)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-%04d|    schedule: \"@every 24h\"", i)
	}
	sim := newMemSim()
	ag := New(Options{NewChecker: sim.newChecker})
	before := runtime.NumGoroutine()
	ag.Start()
	defer ag.Stop(context.Background())
	if err := ag.Apply(sim.config(t, "", orgs...)); err != nil {
		t.Fatal(err)
	}
	if n := runtime.NumGoroutine() - before; n > 10 {
		t.Fatalf("%d goroutines for 2000 idle orgs, want a handful (the dispatcher, the alert loop)", n)
	}
}

// Orgs with the same HTTP client settings share one transport, kept across
// reloads; other settings get their own.
func TestOrgsShareTransports(t *testing.T) {
	sim := newMemSim()
	ag := New(Options{NewChecker: sim.newChecker})
	proxy := "|    proxy_url: http://proxy.example.com:3128"
	cfg := sim.config(t, "", "a", "b", "c", "p1"+proxy, "p2"+proxy, "q|    proxy_url: http://other.example.com:3128")
	if err := ag.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	tr := func(org string) *sharedTransport { return ag.orgs[org].transport }
	if tr("a") != tr("b") || tr("b") != tr("c") || tr("p1") != tr("p2") {
		t.Fatal("orgs with the same HTTP client settings do not share a transport")
	}
	if tr("a") == tr("p1") || tr("p1") == tr("q") {
		t.Fatal("orgs with other HTTP client settings share a transport")
	}
	if n := len(ag.transports); n != 3 {
		t.Errorf("%d transports for 3 distinct settings", n)
	}
	shared := tr("a")
	// A reload that changes a's labels rebuilds a, on the same transport.
	changed := sim.config(t, "", "a|    labels: {team: x}", "b", "c", "p1"+proxy, "p2"+proxy, "q|    proxy_url: http://other.example.com:3128")
	if err := ag.Apply(changed); err != nil {
		t.Fatal(err)
	}
	if tr("a") != shared || tr("b") != shared {
		t.Error("a reload replaced the shared transport")
	}
}

// The alert loop costs nothing while no alert is active, and sorts nothing
// while none is due for a re-send.
func TestAlertTickIsFreeWithoutActiveAlerts(t *testing.T) {
	orgs := []configs.Org{{Target: checks.Target{Name: "acme", TokenMode: "fresh"}}}
	for i := range 1000 {
		orgs = append(orgs, configs.Org{Target: checks.Target{Name: fmt.Sprintf("org-%04d", i), TokenMode: "fresh"}})
	}
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1, ResendInterval: time.Hour}, orgs...)
	if n := testing.AllocsPerRun(100, h.a.tick); n != 0 {
		t.Errorf("tick with no active alert: %.0f allocations, want 0", n)
	}
	h.check(inactive(checks.OutcomeTokenInactive))
	h.expect("firing TokenIntrospectionInactive token_inactive")
	if h.a.active != 1 {
		t.Fatalf("active count %d after a firing, want 1", h.a.active)
	}
	if n := testing.AllocsPerRun(100, h.a.tick); n != 0 {
		t.Errorf("tick with an active alert not due: %.0f allocations, want 0", n)
	}
	h.expect()
	// Removing the org resolves its alert: the count follows.
	h.setOrgs(orgs[1:]...)
	if h.a.active != 0 {
		t.Fatalf("active count %d after the org was removed, want 0", h.a.active)
	}
}

// Orgs at one host share connections, and a connection idle for
// idleConnTimeout closes: connections follow the checks running, not the
// number of orgs (one kept per org, idle between its checks, before).
func TestConnectionsAreSharedAndCloseWhenIdle(t *testing.T) {
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprintf("org-%02d", i)
	}
	sim := newSimulated(t, names...)
	var opened, closed atomic.Int32
	srv := httptest.NewUnstartedServer(sim.org.Handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	sim.srv = srv
	rec := newRecorder()
	ag := New(Options{Observers: []Observer{rec}, RunOnStart: true})
	ag.Start()
	defer ag.Stop(context.Background())
	if err := ag.Apply(sim.config(t, "  max_concurrent_checks: 2", names...)); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "every org's first check", func() bool {
		for _, n := range names {
			if rec.count(n) == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("%d connections for the first checks of %d orgs, 2 at a time", opened.Load(), len(names))
	if n := opened.Load(); n > 8 {
		t.Errorf("%d connections for %d orgs checked 2 at a time: the orgs do not share them", n, len(names))
	}
	waitFor(t, "the idle connections to close", func() bool { return closed.Load() == opened.Load() })
}
