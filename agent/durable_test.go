package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
	"github.com/tokenwatch/tokenwatch/internal/fakeclock"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
	"github.com/tokenwatch/tokenwatch/internal/store"
)

// rtSim is a simulated org with a rotating refresh token app "rt".
type rtSim struct {
	*simulated
	token string
}

func newRTSim(t *testing.T) *rtSim {
	t.Helper()
	sim := newSimulated(t)
	sim.org.AddApp(orgsim.App{ClientID: "rt", ClientSecret: "secret-rt", RefreshTokenRotation: true})
	rt, err := sim.org.IssueRefreshToken("rt", "u@example.com")
	if err != nil {
		t.Fatal(err)
	}
	return &rtSim{simulated: sim, token: rt}
}

func (s *rtSim) config(t *testing.T, team, token string) *configs.Config {
	t.Helper()
	y := fmt.Sprintf("orgs:\n  - name: rt\n    url: %s\n    schedule: \"@every 1h\"\n    client: {id: rt, secret: secret-rt}\n"+
		"    grant: {type: refresh_token, refresh_token: %q}\n    labels: {team: %s}\n", s.srv.URL, token, team)
	c, err := configs.Parse([]byte(y), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A reload while a refresh is in flight: the old checker's refresh rotates
// the token after the reload built the new checker. Copying the token at
// reload time (as tokenwatch once did) hands the new checker the retired
// one, and the next refresh kills the chain. One shared chain cannot.
func TestReloadDuringRefreshKeepsTheChain(t *testing.T) {
	sim := newRTSim(t)
	// The refresh is held at the server until the reload is done.
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold, Remaining: 1})
	ag := New(Options{})
	defer ag.Stop(context.Background())
	defer release()
	if err := ag.Apply(sim.config(t, "a", sim.token)); err != nil {
		t.Fatal(err)
	}
	inflight := make(chan *checks.Result)
	go func() {
		_, res, _ := ag.ProbeOrg(context.Background(), "rt", fresh)
		inflight <- res
	}()
	waitFor(t, "the refresh to be sent", func() bool { return sim.org.Requests(orgsim.EndpointToken) == 1 })
	// A label change rebuilds the checker while the refresh is at the server.
	if err := ag.Apply(sim.config(t, "b", sim.token)); err != nil {
		t.Fatal(err)
	}
	release()
	if res := <-inflight; res == nil || res.Outcome != checks.OutcomeOK {
		t.Fatalf("the refresh in flight: %v", res)
	}
	for i := range 2 {
		_, res, err := ag.ProbeOrg(context.Background(), "rt", fresh)
		if err != nil || res.Outcome != checks.OutcomeOK {
			t.Fatalf("refresh %d after the reload: %v %s %s", i, err, res.Outcome, res.Explanation)
		}
	}
}

// A restart reads the rotated refresh token from the store instead of the
// configured one, which rotation retired; a changed configured token wins.
func TestRestartUsesTheStoredRefreshToken(t *testing.T) {
	sim := newRTSim(t)
	dir := t.TempDir()
	run := func(token string) *checks.Result {
		t.Helper()
		st := openStore(t, dir)
		defer st.Close()
		ag := New(Options{Store: st})
		defer ag.Stop(context.Background())
		if err := ag.Apply(sim.config(t, "a", token)); err != nil {
			t.Fatal(err)
		}
		_, res, err := ag.ProbeOrg(context.Background(), "rt", fresh)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for i := range 3 {
		if res := run(sim.token); res.Outcome != checks.OutcomeOK {
			t.Fatalf("start %d: %s %s", i, res.Outcome, res.Explanation)
		}
	}
	// An operator re-authorizes and configures a new refresh token.
	fresh, err := sim.org.IssueRefreshToken("rt", "u@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if res := run(fresh); res.Outcome != checks.OutcomeOK {
		t.Fatalf("with a new configured token: %s %s", res.Outcome, res.Explanation)
	}
	if res := run(fresh); res.Outcome != checks.OutcomeOK {
		t.Fatalf("restart after the new token rotated: %s %s", res.Outcome, res.Explanation)
	}
}

// Without the store, a restart sends the configured token that rotation
// retired: the server refuses it and tokenwatch says the chain is broken.
// A token tokenwatch got from a rotation and the server then refused is
// refresh_token_retired too.
func TestRetiredRefreshTokenIsNamed(t *testing.T) {
	sim := newRTSim(t)
	ag := New(Options{})
	if err := ag.Apply(sim.config(t, "a", sim.token)); err != nil {
		t.Fatal(err)
	}
	if _, res, err := ag.ProbeOrg(context.Background(), "rt", fresh); err != nil || res.Outcome != checks.OutcomeOK {
		t.Fatalf("first refresh: %v %v", res, err)
	}
	ag.Stop(context.Background())
	// The configured token was retired by that rotation; the server's reuse
	// detection now kills the chain, so the rotated token dies too.
	again := New(Options{})
	defer again.Stop(context.Background())
	if err := again.Apply(sim.config(t, "a", sim.token)); err != nil {
		t.Fatal(err)
	}
	_, res, _ := again.ProbeOrg(context.Background(), "rt", fresh)
	if res.Outcome != checks.OutcomeGrantRejected {
		t.Fatalf("a configured token rotated away by an earlier process: %s, want grant_rejected (this process cannot know)", res.Outcome)
	}
	// The first agent's chain, had it gone on, holds a rotated token the
	// server has now revoked with its family.
	chain := ag.chains[digest(sim.token)]
	c := checks.NewChecker(mustTarget(t, sim.config(t, "a", sim.token).Orgs[0]), checks.WithRefreshChain(chain))
	res = c.Check(context.Background())
	if res.Outcome != checks.OutcomeRefreshTokenRetired || res.Fix == "" {
		t.Fatalf("a rotated token refused by the server: %s (fix %q), want refresh_token_retired with a fix", res.Outcome, res.Fix)
	}
}

func mustTarget(t *testing.T, o configs.Org) checks.Target {
	t.Helper()
	return o.Target
}

// Ten minutes of a "@every 10s" schedule with a wrong password: the backoff
// bounds the logins (counted at the server), and the alert fires and stays
// firing while the org backs off.
func TestWrongPasswordBacksOff(t *testing.T) {
	sim := newSimulated(t)
	sim.org.AddApp(orgsim.App{ClientID: "pw", ClientSecret: "secret-pw"})
	y := fmt.Sprintf("global: {backoff: {initial: 1m, max: 4m}}\norgs:\n  - name: pw\n    url: %s\n    schedule: \"@every 10s\"\n"+
		"    client: {id: pw, secret: secret-pw}\n    grant: {type: password, username: u@example.com, password: wrong}\n", sim.srv.URL)
	cfg, err := configs.Parse([]byte(y), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	s := &sender{accept: true}
	rec := newRecorder()
	ag := New(Options{Clock: c.Now, Alerts: s, Observers: []Observer{rec}})
	defer ag.Stop(context.Background())
	if err := ag.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	j := ag.orgs["pw"]
	runs := 0
	for elapsed := time.Duration(0); elapsed < 10*time.Minute; elapsed += 10 * time.Second {
		j.Run()
		runs++
		c.Advance(10 * time.Second)
	}
	logins := sim.org.Requests(orgsim.EndpointToken)
	// Waits 1m, 2m, 4m, 4m (+-20%): attempts at about 0, 1, 3, 7 minutes.
	const bound = 5
	t.Logf("%d scheduled runs over 10 minutes, %d logins (bound %d)", runs, logins, bound)
	if logins > bound || logins < 3 {
		t.Fatalf("%d logins in 10 minutes of @every 10s with a wrong password, want 3..%d", logins, bound)
	}
	last := ag.Last()["pw"]
	if last == nil || last.Outcome != checks.OutcomeGrantRejected || last.NextAttempt.IsZero() {
		t.Fatalf("last result %+v: want grant_rejected with a next attempt", last)
	}
	waitFor(t, "the alert to be accepted", func() bool {
		for _, a := range ag.Alerts() {
			if a.Org == "pw" && a.Alertname == AlertAcquisitionFailed && a.State == AlertFiring {
				return true
			}
		}
		return false
	})
	for _, m := range s.take() {
		if m == "resolved TokenAcquisitionFailed grant_rejected" {
			t.Fatal("the alert resolved while the org backed off")
		}
	}
	// /probe?force=1 resets the backoff and logs in at once.
	if _, res, err := ag.ProbeOrg(context.Background(), "pw", ProbeOptions{Force: true}); err != nil || res == nil {
		t.Fatalf("forced probe: %v %v", res, err)
	}
	if got := sim.org.Requests(orgsim.EndpointToken); got != logins+1 {
		t.Fatalf("a forced probe while backing off: %d logins, want %d", got, logins+1)
	}
	// Without force, a probe does not log in while the org backs off; it answers the last result.
	_, res, err := ag.ProbeOrg(context.Background(), "pw", fresh)
	if !errors.Is(err, ErrNoLogin) || res == nil || res.Outcome != checks.OutcomeGrantRejected {
		t.Fatalf("probe while backing off: %v %v, want the last result and ErrNoLogin", res, err)
	}
	if got := sim.org.Requests(orgsim.EndpointToken); got != logins+1 {
		t.Fatalf("a probe while backing off logged in")
	}
	// A second force within backoff.initial does not log in: force=1 in a
	// scrape job must not become a login per scrape.
	c.Advance(30 * time.Second)
	if _, _, err := ag.ProbeOrg(context.Background(), "pw", ProbeOptions{Force: true}); !errors.Is(err, ErrNoLogin) {
		t.Fatalf("second forced probe within a minute: %v, want ErrNoLogin", err)
	}
	c.Advance(31 * time.Second)
	if _, _, err := ag.ProbeOrg(context.Background(), "pw", ProbeOptions{Force: true}); err != nil {
		t.Fatalf("forced probe a minute after the last: %v", err)
	}
	if got := sim.org.Requests(orgsim.EndpointToken); got != logins+2 {
		t.Fatalf("forced probes: %d logins, want %d", got, logins+2)
	}
}

func TestBackoffWait(t *testing.T) {
	b := configs.Backoff{Initial: time.Minute, Max: 10 * time.Minute}
	for _, tc := range []struct {
		n          int
		retryAfter time.Duration
		base       time.Duration
	}{
		{1, 0, time.Minute}, {2, 0, 2 * time.Minute}, {3, 0, 4 * time.Minute}, {4, 0, 8 * time.Minute},
		{5, 0, 10 * time.Minute}, {50, 0, 10 * time.Minute},
	} {
		for range 20 {
			got := backoffWait(b, tc.n, tc.retryAfter)
			lo, hi := time.Duration(float64(tc.base)*(1-jitter)), time.Duration(float64(tc.base)*(1+jitter))
			if got < lo || got > hi {
				t.Fatalf("rejection %d: wait %s, want %s..%s", tc.n, got, lo, hi)
			}
		}
	}
	if got := backoffWait(b, 1, 3*time.Hour); got != 3*time.Hour {
		t.Fatalf("Retry-After 3h: wait %s, want 3h", got)
	}
}

func TestLoginBudget(t *testing.T) {
	b := newLoginBudget()
	b.setLimit(3)
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		if !b.take("h u", t0.Add(time.Duration(i)*time.Minute), false) {
			t.Fatalf("login %d refused within the budget", i)
		}
	}
	if b.take("h u", t0.Add(10*time.Minute), false) {
		t.Fatal("a fourth login within the hour was allowed")
	}
	if !b.take("h other", t0.Add(10*time.Minute), false) {
		t.Fatal("another identity shares the budget")
	}
	if !b.take("h u", t0.Add(time.Hour), false) {
		t.Fatal("the first login left the window but its slot did not free")
	}
	// /probe gets at most half of a budget; the other half stays for the schedule.
	b.setLimit(10)
	for i := range 5 {
		if !b.take("h p", t0, true) {
			t.Fatalf("probe login %d refused within half the budget", i)
		}
	}
	if b.take("h p", t0, true) {
		t.Fatal("/probe took more than half the budget")
	}
	for i := range 5 {
		if !b.take("h p", t0, false) {
			t.Fatalf("scheduled login %d refused: /probe starved the schedule", i)
		}
	}
	if b.take("h p", t0, false) {
		t.Fatal("more than the budget")
	}
}

// 1,000 concurrent probes of one slow org share one check: one login. A
// second org scheduled every second keeps its schedule meanwhile, since
// /probe checks have their own slots: the slow org's login is held at the
// server until the scheduled org has run a check.
func TestProbeFloodIsCoalescedAndLeavesTheSchedule(t *testing.T) {
	sim := newSimulated(t, "slow", "steady")
	var slowLogins atomic.Int32
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	h := sim.org.Handler()
	sim.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		if r.URL.Path == "/services/oauth2/token" && (r.FormValue("client_id") == "slow" || user == "slow") {
			slowLogins.Add(1)
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(sim.srv.Close)
	cfg := sim.config(t, "  max_concurrent_checks: 2\n  login_budget: 20", "slow", "steady|    schedule: \"@every 1s\"")
	rec := newRecorder()
	ag := New(Options{Observers: []Observer{rec}})
	if err := ag.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ag.Start()
	defer ag.Stop(context.Background())
	defer release()
	var wg sync.WaitGroup
	var answered, noResult atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 1000 {
		wg.Go(func() {
			_, res, err := ag.ProbeOrg(ctx, "slow", fresh)
			switch {
			case err == nil && res != nil:
				answered.Add(1)
			case res == nil:
				noResult.Add(1)
			}
		})
	}
	waitFor(t, "the slow org's login to reach it", func() bool { return slowLogins.Load() >= 1 })
	before := rec.count("steady")
	rec.wait(t, "a scheduled check of steady while the slow login is held", func() bool { return rec.count("steady") > before })
	release()
	wg.Wait()
	steady := rec.count("steady") - before
	t.Logf("1000 probes: %d answered with a check, %d without a result; logins at the slow org: %d; steady org checks meanwhile: %d",
		answered.Load(), noResult.Load(), slowLogins.Load(), steady)
	if n := slowLogins.Load(); n > 20 || n < 1 {
		t.Fatalf("%d logins for 1000 concurrent probes, want 1..20 (the budget)", n)
	}
	if answered.Load() != 1000 {
		t.Fatalf("%d of 1000 probes answered", answered.Load())
	}
	if steady < 1 {
		t.Fatalf("the scheduled org ran no check during the flood")
	}
}

// After a restart, a firing alert keeps its startsAt and an org that
// recovered meanwhile is resolved at its first good check; the last results
// are back, marked as loaded.
func TestRestartKeepsAlertsAndResults(t *testing.T) {
	sim := newSimulated(t, "bad", "fixed")
	dir := t.TempDir()
	yaml := func(secretOfFixed string) *configs.Config {
		y := fmt.Sprintf("alerting: {failure_threshold: 1}\norgs:\n"+
			"  - name: bad\n    url: %[1]s\n    schedule: \"@every 1h\"\n    client: {id: bad, secret: wrong}\n    grant: {type: client_credentials}\n"+
			"  - name: fixed\n    url: %[1]s\n    schedule: \"@every 1h\"\n    client: {id: fixed, secret: secret-fixed}\n    grant: {type: client_credentials}\n", sim.srv.URL)
		c, err := configs.Parse([]byte(y), t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// First life: both orgs fail (fixed's app is locked out), both alerts fire.
	sim.org.SetFrozen("u@example.com", true)
	st := openStore(t, dir)
	s1 := &sender{accept: true}
	ag := New(Options{Store: st, Alerts: s1})
	if err := ag.Apply(yaml("")); err != nil {
		t.Fatal(err)
	}
	ag.Start()
	for _, org := range []string{"bad", "fixed"} {
		if _, _, err := ag.ProbeOrg(context.Background(), org, fresh); err != nil {
			t.Fatal(err)
		}
	}
	var startsAt map[string]time.Time
	waitFor(t, "both alerts firing", func() bool {
		startsAt = map[string]time.Time{}
		for _, a := range ag.Alerts() {
			if a.State == AlertFiring {
				startsAt[a.Org] = a.Since
			}
		}
		return len(startsAt) == 2
	})
	ag.Stop(context.Background())
	st.Close()

	// While down, "fixed" recovers.
	sim.org.SetFrozen("u@example.com", false)
	st = openStore(t, dir)
	defer st.Close()
	s2 := &sender{accept: true}
	rec := newRecorder()
	ag = New(Options{Store: st, Alerts: s2, Observers: []Observer{rec}})
	defer ag.Stop(context.Background())
	if err := ag.Apply(yaml("")); err != nil {
		t.Fatal(err)
	}
	last := ag.Last()
	for _, org := range []string{"bad", "fixed"} {
		if last[org] == nil || !last[org].Loaded || last[org].Success() {
			t.Fatalf("%s: last result after restart %+v, want the failed one, loaded", org, last[org])
		}
		if rec.count(org) != 0 {
			t.Fatalf("%s: observers heard of %d results at start, want none: a loaded result is no check", org, rec.count(org))
		}
		shown := false
		for _, s := range ag.States() {
			shown = shown || (s.Info.Name == org && s.Last == last[org])
		}
		if !shown {
			t.Fatalf("%s: States does not show the loaded result", org)
		}
	}
	// At start the firing alerts are re-sent under their first startsAt.
	restarted := s2.all()
	if len(restarted) != 2 {
		t.Fatalf("notifications at start: %d, want the 2 firing alerts", len(restarted))
	}
	for _, m := range restarted {
		org := m.Alert.Labels["org"]
		if m.Alert.Resolved() || !m.Alert.StartsAt.Equal(startsAt[org]) {
			t.Fatalf("%s at start: %s startsAt %s, want firing since %s", org, m.Alert.Status, m.Alert.StartsAt, startsAt[org])
		}
	}
	// Both backed off after their rejected logins, and the backoff survived
	// the restart: force the first checks rather than wait it out.
	for _, org := range []string{"bad", "fixed"} {
		if _, _, err := ag.ProbeOrg(context.Background(), org, ProbeOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	var resolvedFixed, resolvedBad bool
	for _, m := range s2.all()[2:] {
		switch {
		case m.Alert.Resolved() && m.Alert.Labels["org"] == "fixed":
			resolvedFixed = true
		case m.Alert.Resolved() && m.Alert.Labels["org"] == "bad":
			resolvedBad = true
		}
	}
	if !resolvedFixed || resolvedBad {
		t.Fatalf("after the first checks: fixed resolved %v (want true), bad resolved %v (want false)", resolvedFixed, resolvedBad)
	}
	for _, a := range ag.Alerts() {
		if a.Org == "bad" && !a.Since.Equal(startsAt["bad"]) {
			t.Fatalf("bad's alert since %s, want %s", a.Since, startsAt["bad"])
		}
	}
}

// all returns every message so far.
func (s *sender) all() []alerting.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]alerting.Message(nil), s.msgs...)
}

// Stop leaves no goroutine behind: not the scheduler's, not the first runs',
// not those closing the checkers of removed orgs, not /probe's, not the
// state writer's. And an Apply after Stop starts nothing.
func TestStopLeavesNoGoroutine(t *testing.T) {
	sim := newSimulated(t, "a", "b")
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	st := openStore(t, t.TempDir())
	defer st.Close()
	ag := New(Options{Store: st, RunOnStart: true})
	if err := ag.Apply(sim.config(t, "", "a", "b")); err != nil {
		t.Fatal(err)
	}
	ag.Start()
	// Removing b closes its checker in the background.
	if err := ag.Apply(sim.config(t, "", "a")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ag.ProbeOrg(context.Background(), "a", fresh); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ag.Stop(ctx)
	if err := ag.Apply(sim.config(t, "", "a", "b")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Apply after Stop: %v, want ErrStopped", err)
	}
	// A run group may interrupt an actor before it runs: Start after Stop starts nothing.
	ag.Start()
	sim.srv.CloseClientConnections()
}

// A reload that changes what the chain was keyed on once (the org's URL
// spelled differently) while a refresh is in flight keeps one chain: the
// chain belongs to the configured refresh token, not to the org's settings.
func TestReloadChangingTheOrgDuringRefreshKeepsTheChain(t *testing.T) {
	sim := newRTSim(t)
	// The refresh is held at the server until the reload is done.
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	sim.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold, Remaining: 1})
	ag := New(Options{})
	defer ag.Stop(context.Background())
	defer release()
	if err := ag.Apply(sim.config(t, "a", sim.token)); err != nil {
		t.Fatal(err)
	}
	inflight := make(chan *checks.Result)
	go func() {
		_, res, _ := ag.ProbeOrg(context.Background(), "rt", fresh)
		inflight <- res
	}()
	waitFor(t, "the refresh to be sent", func() bool { return sim.org.Requests(orgsim.EndpointToken) == 1 })
	changed := sim.config(t, "a", sim.token)
	changed.Orgs[0].URL += "/"
	if err := ag.Apply(changed); err != nil {
		t.Fatal(err)
	}
	release()
	if res := <-inflight; res == nil || res.Outcome != checks.OutcomeOK {
		t.Fatalf("the refresh in flight: %v", res)
	}
	for i := range 2 {
		if _, res, err := ag.ProbeOrg(context.Background(), "rt", fresh); err != nil || res.Outcome != checks.OutcomeOK {
			t.Fatalf("refresh %d after the reload: %v %s %s", i, err, res.Outcome, res.Explanation)
		}
	}
}

// The backoff survives a restart with the same credentials, and ends at a
// restart with other ones: the change may be the fix.
func TestRestartKeepsTheBackoffOfTheSameCredentials(t *testing.T) {
	sim := newSimulated(t)
	sim.org.AddApp(orgsim.App{ClientID: "pw", ClientSecret: "secret-pw"})
	dir := t.TempDir()
	cfg := func(password string) *configs.Config {
		y := fmt.Sprintf("orgs:\n  - name: pw\n    url: %s\n    schedule: \"@every 1h\"\n"+
			"    client: {id: pw, secret: secret-pw}\n    grant: {type: password, username: u@example.com, password: %s}\n", sim.srv.URL, password)
		c, err := configs.Parse([]byte(y), t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	life := func(password string, probe func(ag *Agent)) {
		st := openStore(t, dir)
		defer st.Close()
		ag := New(Options{Store: st})
		defer ag.Stop(context.Background())
		if err := ag.Apply(cfg(password)); err != nil {
			t.Fatal(err)
		}
		probe(ag)
	}
	life("wrong", func(ag *Agent) {
		if _, res, err := ag.ProbeOrg(context.Background(), "pw", fresh); err != nil || res.Outcome != checks.OutcomeGrantRejected {
			t.Fatalf("wrong password: %v %v", res, err)
		}
	})
	life("wrong", func(ag *Agent) {
		if _, _, err := ag.ProbeOrg(context.Background(), "pw", fresh); !errors.Is(err, ErrNoLogin) {
			t.Fatalf("same wrong password after a restart: %v, want the backoff to go on (ErrNoLogin)", err)
		}
	})
	life("p", func(ag *Agent) {
		// The login succeeds (the password grant's session id is then the
		// seed case: introspection not permitted, a working token).
		if _, res, err := ag.ProbeOrg(context.Background(), "pw", fresh); err != nil || !res.Token.Minted {
			t.Fatalf("corrected password after a restart: %v %v, want a login that succeeds", res, err)
		}
	})
}

// A resolve no destination took before a stop is sent at the next start,
// also for an org removed from the configuration meanwhile.
func TestUndeliveredResolvesSentAfterRestart(t *testing.T) {
	sim := newSimulated(t, "a", "b")
	dir := t.TempDir()
	cfg := func(orgs ...string) *configs.Config {
		return sim.config(t, "alerting: {failure_threshold: 1}", orgs...)
	}
	st := openStore(t, dir)
	s1 := &sender{accept: true}
	ag := New(Options{Store: st, Alerts: s1})
	// Both apps run as this user: both fail.
	sim.org.SetFrozen("u@example.com", true)
	if err := ag.Apply(cfg("a", "b")); err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"a", "b"} {
		if _, _, err := ag.ProbeOrg(context.Background(), org, fresh); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both alerts accepted", func() bool {
		n := 0
		for _, a := range ag.Alerts() {
			if a.State == AlertFiring {
				n++
			}
		}
		return n == 2
	})
	// The destination goes away: a recovers (its resolve is not taken), b is
	// removed from the configuration (its resolve is not taken either).
	s1.mu.Lock()
	s1.accept = false
	s1.mu.Unlock()
	if err := ag.Apply(cfg("a")); err != nil {
		t.Fatal(err)
	}
	sim.org.SetFrozen("u@example.com", false)
	if _, res, err := ag.ProbeOrg(context.Background(), "a", ProbeOptions{Force: true}); err != nil || !res.Success() {
		t.Fatalf("a after its fix: %v %v", res, err)
	}
	ag.Stop(context.Background())
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	s2 := &sender{accept: true}
	ag = New(Options{Store: st, Alerts: s2})
	defer ag.Stop(context.Background())
	if err := ag.Apply(cfg("a")); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range s2.all() {
		got[m.Alert.Labels["org"]] = m.Alert.Status
	}
	if got["a"] != "resolved" || got["b"] != "resolved" || len(got) != 2 {
		t.Fatalf("sent at start: %v, want the resolves of a and b", got)
	}
	// Taken now: not sent again at the next start.
	waitFor(t, "the resolves recorded as delivered", func() bool {
		ag.alerts.mu.Lock()
		defer ag.alerts.mu.Unlock()
		return len(ag.alerts.removed) == 0 && len(ag.alerts.orgs["a"].unsent) == 0
	})
}
