package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// fresh asks a probe for a new check, as /probe?max_age=0s does.
var fresh = ProbeOptions{MaxAge: 0}

// recorder is an Observer that remembers what it was told. The configured
// orgs are not told: they are read from States (stateNames).
type recorder struct {
	mu      sync.Mutex
	results map[string][]*checks.Result
	// observed is closed, and replaced, at each result: wait's signal.
	observed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{results: map[string][]*checks.Result{}, observed: make(chan struct{})}
}

func (r *recorder) Observe(info checks.Info, res *checks.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results[info.Name] = append(r.results[info.Name], res)
	close(r.observed)
	r.observed = make(chan struct{})
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.results[name])
}

// wait blocks until cond holds, testing it again at each result observed;
// it fails the test after 10 s. cond may call count.
func (r *recorder) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		observed := r.observed
		r.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-observed:
		case <-timeout.C:
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
	}
}

// waitFor polls cond for up to 10 s, for what cannot signal (the alert
// state, counters of the simulated org); results are waited for with
// recorder.wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, 10*time.Second, what, cond)
}

// doneCounter is the agent's Instruments, signalling each finished
// scheduled run (after its result was published or dropped).
type doneCounter struct {
	noInstruments
	done chan struct{}
}

func newDoneCounter() *doneCounter { return &doneCounter{done: make(chan struct{}, 64)} }

func (d *doneCounter) CheckFinished() { d.done <- struct{}{} }

// wait waits for n more finished runs, for up to 10 s.
func (d *doneCounter) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i := range n {
		select {
		case <-d.done:
		case <-timeout.C:
			t.Fatalf("%d of %d runs finished within 10s", i, n)
		}
	}
}

// simulated starts an org with one client-credentials app per name, behind a
// handler that counts concurrent requests.
type simulated struct {
	org      *orgsim.Org
	srv      *httptest.Server
	inflight atomic.Int32
	peak     atomic.Int32
}

func newSimulated(t testing.TB, apps ...string) *simulated {
	t.Helper()
	s := &simulated{org: orgsim.New(orgsim.Options{})}
	s.org.AddUser(orgsim.User{Username: "u@example.com", Password: "p"})
	for _, a := range apps {
		s.org.AddApp(orgsim.App{ClientID: a, ClientSecret: "secret-" + a, RunAsUser: "u@example.com"})
	}
	h := s.org.Handler()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		for {
			p := s.peak.Load()
			if n <= p || s.peak.CompareAndSwap(p, n) {
				break
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *simulated) config(t testing.TB, global string, orgs ...string) *configs.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  schedule: \"@every 1h\"\n%s\norgs:\n", global)
	for _, o := range orgs {
		name, extra, _ := strings.Cut(o, "|")
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    client: {id: %s, secret: secret-%s}\n    grant: {type: client_credentials}\n%s\n",
			name, s.srv.URL, name, name, extra)
	}
	cfg, err := configs.Parse([]byte(b.String()), t.TempDir(), nil)
	if err != nil {
		t.Fatalf("config:\n%s\n%v", b.String(), err)
	}
	return cfg
}

func TestApplyRunsAddsRemovesAndKeepsState(t *testing.T) {
	sim := newSimulated(t, "a", "b", "c")
	rec := newRecorder()
	ag := New(Options{Observers: []Observer{rec}, RunOnStart: true})
	ag.Start()
	stop := sync.OnceFunc(func() { ag.Stop(context.Background()) })
	defer stop()

	if err := ag.Apply(sim.config(t, "", "a", "b")); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "first checks", func() bool { return rec.count("a") == 1 && rec.count("b") == 1 })
	if r := rec.results["a"][0]; r.Outcome != checks.OutcomeOK {
		t.Fatalf("a: %s %s", r.Outcome, r.Explanation)
	}

	// Reload with the same config: nothing restarts, the last results stay.
	tokens := sim.org.Requests(orgsim.EndpointToken)
	perCheck := tokens / 2
	if err := ag.Apply(sim.config(t, "", "a", "b")); err != nil {
		t.Fatal(err)
	}
	if last := ag.Last(); last["a"] == nil || last["b"] == nil {
		t.Fatalf("unchanged orgs lost their last result: %v", last)
	}

	// Remove a, change b's labels, add c.
	if err := ag.Apply(sim.config(t, "", "b|    labels: {team: x}", "c")); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "changed and added orgs checked", func() bool { return rec.count("b") == 2 && rec.count("c") == 1 })
	last := ag.Last()
	if _, ok := last["a"]; ok {
		t.Errorf("removed org still has state")
	}
	if got := stateNames(ag); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("States lists %v, want [b c]", got)
	}
	if _, _, err := ag.ProbeOrg(context.Background(), "a", fresh); err == nil || !strings.Contains(err.Error(), "unknown org") {
		t.Errorf("probe of removed org: %v", err)
	}

	// Stop waits for every run: had the unchanged reload re-run a and b,
	// their logins would show now. Only b's and c's checks may have logged in.
	stop()
	if got, want := sim.org.Requests(orgsim.EndpointToken), tokens+2*perCheck; perCheck == 0 || got != want {
		t.Errorf("%d token requests in all, want %d: the first checks, then only the changed and the added org's", got, want)
	}
	if a, b := rec.count("a"), rec.count("b"); a != 1 || b != 2 {
		t.Errorf("results: a %d, b %d; want 1 and 2 (an unchanged reload runs nothing)", a, b)
	}
}

func TestApplyRefusesBadConfigAndKeepsRunning(t *testing.T) {
	sim := newSimulated(t, "a")
	rec := newRecorder()
	ag := New(Options{Observers: []Observer{rec}})
	cfg := sim.config(t, "", "a")
	if err := ag.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	bad := sim.config(t, "", "a", "b")
	bad.Orgs[1].Schedule = "every now and then"
	err := ag.Apply(bad)
	if err == nil || !strings.Contains(err.Error(), "every now and then") {
		t.Fatalf("bad schedule accepted: %v", err)
	}
	if got := stateNames(ag); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a refused config changed the orgs: %v", got)
	}
	if _, _, err := ag.ProbeOrg(context.Background(), "a", fresh); err != nil {
		t.Fatalf("running org lost after a refused reload: %v", err)
	}
}

// a's check is held at the org until a has been removed; then it finishes,
// and its result must not be published.
func TestLateResultOfRemovedOrgIsDropped(t *testing.T) {
	sim := newSimulated(t, "a", "b")
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold})
	rec := newRecorder()
	runs := newDoneCounter()
	ag := New(Options{Observers: []Observer{rec}, RunOnStart: true, Instruments: runs})
	ag.Start()
	defer ag.Stop(context.Background())
	defer release()
	if err := ag.Apply(sim.config(t, "", "a", "b")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's and b's checks to reach the org", func() bool { return sim.org.Requests(orgsim.EndpointToken) == 2 })
	if err := ag.Apply(sim.config(t, "", "b")); err != nil {
		t.Fatal(err)
	}
	release()
	runs.wait(t, 2) // both checks finished: b's published, a's dropped
	if n := rec.count("b"); n != 1 {
		t.Fatalf("b, still configured, published %d results, want 1", n)
	}
	if got := stateNames(ag); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("States lists %v after a was removed, want [b]", got)
	}
	if n := rec.count("a"); n != 0 {
		t.Fatalf("a removed org's late result was published (%d)", n)
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	names := []string{"o1", "o2", "o3", "o4", "o5", "o6"}
	sim := newSimulated(t, names...)
	sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Latency: 100 * time.Millisecond})
	rec := newRecorder()
	ag := New(Options{Observers: []Observer{rec}, RunOnStart: true})
	ag.Start()
	defer ag.Stop(context.Background())
	if err := ag.Apply(sim.config(t, "  max_concurrent_checks: 2", names...)); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "all checks", func() bool {
		for _, n := range names {
			if rec.count(n) == 0 {
				return false
			}
		}
		return true
	})
	if p := sim.peak.Load(); p > 2 {
		t.Fatalf("%d requests in flight at once, want at most max_concurrent_checks = 2", p)
	}
}

// a's check is held at the org while Stop begins: Stop must not return
// before the check has finished and been published.
func TestStopWaitsForRunningChecks(t *testing.T) {
	sim := newSimulated(t, "a")
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release()
	sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold})
	rec := newRecorder()
	ag := New(Options{Observers: []Observer{rec}, RunOnStart: true})
	ag.Start()
	cfg := sim.config(t, "", "a")
	if err := ag.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's check to reach the org", func() bool { return sim.org.Requests(orgsim.EndpointToken) == 1 })
	stopped := make(chan struct{})
	go func() {
		ag.Stop(context.Background())
		close(stopped)
	}()
	// Apply refuses once Stop has begun.
	waitFor(t, "Stop to begin", func() bool { return errors.Is(ag.Apply(cfg), ErrStopped) })
	select {
	case <-stopped:
		t.Fatal("Stop returned while a check was running")
	default:
	}
	release()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return within 10s of the check's release")
	}
	if rec.count("a") != 1 || rec.results["a"][0].Outcome != checks.OutcomeOK {
		t.Fatalf("stop did not let the running check finish: %d results", rec.count("a"))
	}
}

func TestShardsPartitionOrgs(t *testing.T) {
	sim := newSimulated(t)
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("org-%02d", i))
	}
	cfg := sim.config(t, "", names...)
	seen := map[string]int{}
	for shard := range 3 {
		rec := newRecorder()
		ag := New(Options{Observers: []Observer{rec}, Shard: shard, Shards: 3})
		if err := ag.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		got := stateNames(ag)
		if len(got) == 0 || len(got) == 40 {
			t.Errorf("shard %d owns %d of 40 orgs", shard, len(got))
		}
		for _, n := range got {
			seen[n]++
		}
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("org %s is owned by %d shards, want exactly 1", n, seen[n])
		}
	}
}

func TestSpreadSchedule(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	perSecond := map[int64]int{}
	offsets := map[time.Duration]bool{}
	for i := range 1000 {
		name := fmt.Sprintf("org-%d", i)
		s, err := spreadSchedule("@every 1m", name)
		if err != nil {
			t.Fatal(err)
		}
		next := s.Next(now)
		if !next.After(now) || next.Sub(now) > time.Minute {
			t.Fatalf("%s: next %s not within one interval of %s", name, next, now)
		}
		if again := s.Next(next); again.Sub(next) != time.Minute {
			t.Fatalf("%s: runs %s apart, want 1m", name, again.Sub(next))
		}
		twin, _ := spreadSchedule("@every 1m", name)
		if twin.Next(now) != next {
			t.Fatalf("%s: offset is not deterministic", name)
		}
		perSecond[next.Unix()]++
		offsets[next.Sub(now)] = true
	}
	busiest := 0
	for _, n := range perSecond {
		busiest = max(busiest, n)
	}
	// 1000 orgs over 60 s average under 17 a second; all in one second would be 1000.
	if busiest > 50 || len(perSecond) < 55 {
		t.Fatalf("runs are not spread: busiest second has %d, %d distinct seconds", busiest, len(perSecond))
	}

	s, err := spreadSchedule("*/5 * * * *", "acme")
	if err != nil {
		t.Fatal(err)
	}
	next := s.Next(now)
	if off := next.Sub(next.Truncate(5 * time.Minute)); !next.After(now) || off >= time.Minute {
		t.Fatalf("cron spec run at %s: delayed by %s, want within [0, 1m) of a */5 minute", next, off)
	}
	if _, err := spreadSchedule("61 * * * *", "x"); err == nil {
		t.Fatal("a bad spec was accepted")
	}
}

func TestReloadCarriesTheRotatedRefreshToken(t *testing.T) {
	sim := newSimulated(t)
	sim.org.AddApp(orgsim.App{ClientID: "rt", ClientSecret: "secret-rt", RefreshTokenRotation: true})
	rt, err := sim.org.IssueRefreshToken("rt", "u@example.com")
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(team string) *configs.Config {
		y := fmt.Sprintf("orgs:\n  - name: rt\n    url: %s\n    client: {id: rt, secret: secret-rt}\n    grant: {type: refresh_token, refresh_token: %q}\n    labels: {team: %s}\n", sim.srv.URL, rt, team)
		c, err := configs.Parse([]byte(y), t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ag := New(Options{})
	if err := ag.Apply(cfg("a")); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, res, err := ag.ProbeOrg(context.Background(), "rt", fresh); err != nil || res.Outcome != checks.OutcomeOK {
			t.Fatalf("check %d before the reload: %v %v", i, err, res)
		}
	}
	// A label change rebuilds the org's checker; the configured token was rotated out long ago.
	if err := ag.Apply(cfg("b")); err != nil {
		t.Fatal(err)
	}
	if _, res, err := ag.ProbeOrg(context.Background(), "rt", fresh); err != nil || res.Outcome != checks.OutcomeOK {
		t.Fatalf("after the reload: %v %s %s", err, res.Outcome, res.Explanation)
	}
}

// A probe whose caller goes away does not cancel its check: the check runs
// to its own deadline and is published like a scheduled one, since a
// cancelled check says nothing about the org (and a cancelled refresh could
// lose a rotated token).
func TestProbeOutlivingItsCallerRunsToTheEnd(t *testing.T) {
	sim := newSimulated(t, "a")
	// The check's login is held at the org until its caller has gone.
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold, Remaining: 1})
	rec := newRecorder()
	ag := New(Options{Observers: []Observer{rec}})
	defer ag.Stop(context.Background())
	defer release()
	if err := ag.Apply(sim.config(t, "", "a")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		res *checks.Result
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		_, res, err := ag.ProbeOrg(ctx, "a", fresh)
		answered <- answer{res, err}
	}()
	waitFor(t, "the probe's login to reach the org", func() bool { return sim.org.Requests(orgsim.EndpointToken) == 1 })
	cancel()
	got := <-answered
	if !errors.Is(got.err, ErrStillRunning) || got.res != nil {
		t.Fatalf("probe whose caller went away: result %v, err %v; want no result and ErrStillRunning", got.res, got.err)
	}
	release()
	rec.wait(t, "the probe's check to be published", func() bool { return rec.count("a") == 1 })
	if got := ag.Last()["a"]; got == nil || got.Outcome != checks.OutcomeOK {
		t.Fatalf("published result %v, want ok", got)
	}
	// The next probe within max_age answers that result without a login.
	tokens := sim.org.Requests(orgsim.EndpointToken)
	_, res, err := ag.ProbeOrg(context.Background(), "a", ProbeOptions{MaxAge: time.Hour})
	if err != nil || res == nil || res.Outcome != checks.OutcomeOK {
		t.Fatalf("fresh probe: %v %v", res, err)
	}
	if got := sim.org.Requests(orgsim.EndpointToken); got != tokens {
		t.Errorf("a probe within max_age logged in: %d token requests, want %d", got, tokens)
	}
}

func TestRenewedTLSFilesCountAsAChange(t *testing.T) {
	sim := newSimulated(t, "a")
	dir := t.TempDir()
	ca := dir + "/ca.pem"
	write := func(c *x509.Certificate) {
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(selfSigned(t))
	ag := New(Options{})
	apply := func() *orgJob {
		if err := ag.Apply(sim.config(t, "", "a|    tls: {ca_file: "+ca+"}")); err != nil {
			t.Fatal(err)
		}
		return ag.orgs["a"]
	}
	first := apply()
	if again := apply(); again != first {
		t.Fatal("an unchanged reload rebuilt the org")
	}
	write(selfSigned(t))
	if renewed := apply(); renewed == first {
		t.Fatal("a CA file renewed at the same path was ignored on reload")
	}
}

// selfSigned makes a new self-signed CA certificate.
func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestScheduleInterval(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want time.Duration
	}{
		{"@every 90s", 90 * time.Second},
		{"*/5 * * * *", 5 * time.Minute},
		{"CRON_TZ=UTC 0 * * * *", time.Hour},
		{"0 9 * * *", 24 * time.Hour},
		{"0 9 * * 1-5", 72 * time.Hour}, // the weekend gap
		{"not a schedule", 0},
	} {
		if got := scheduleInterval(tc.spec); got != tc.want {
			t.Errorf("scheduleInterval(%q) = %s, want %s", tc.spec, got, tc.want)
		}
	}
}
