package durability

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// TestWrongPasswordBacksOff runs a password-grant org with a wrong password
// on "@every 1s" for 30 seconds, with backoff {initial: 2s, max: 8s}. A
// monitor that logs in every second with a wrong password gets the account
// locked out; tokenwatch must back off: attempts near 0, 2, 6, 14, 22 and
// 30 s (each wait +-20%), so at most 7 token requests instead of about 30,
// while the alert stays firing and the metrics keep saying the org fails.
func TestWrongPasswordBacksOff(t *testing.T) {
	t.Parallel()
	const (
		org    = "locked-out"
		window = 30 * time.Second
		// Waits of 2, 4, 8, 8, 8 s shortened by 20% put attempts at 0, 1.6,
		// 4.8, 11.2, 17.6, 24 and 30.4 s: six in the window; one more for a
		// window that ends late.
		maxAttempts = 7
		// Waits lengthened by 20% (2.4, 4.8, 9.6 s, then 9.6 s at the cap)
		// still leave attempts near 0, 2.4, 7.2, 16.8 and 26.4 s.
		minAttempts = 3
	)
	sim := orgsim.New(orgsim.Options{OrgID: "00D5e000000BOFAAA"})
	sim.AddUser(orgsim.User{Username: "integration@backoff.example", Password: "right", SecurityToken: "tok"})
	sim.AddApp(orgsim.App{ClientID: "backoff-app", ClientSecret: "backoff-secret", IntrospectAll: true})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	hook := newReceiver(t, "tokenwatch's webhook")

	dir := t.TempDir()
	config := filepath.Join(dir, "tokenwatch.yml")
	writeFile(t, config, fmt.Sprintf(`global:
  schedule: "@every 1s"
  timeout: 3s
  backoff: {initial: 2s, max: 8s}
orgs:
  - name: %s
    url: %s
    client: {id: backoff-app, secret: backoff-secret}
    grant: {type: password, username: integration@backoff.example, password: wrong-password}
alerting:
  failure_threshold: 1
  resend_interval: 2s
  webhooks:
    - url: %s/hook
      timeout: 2s
`, org, sim.URL(), hook.srv.URL))

	began := time.Now()
	d := startDaemon(t, config, filepath.Join(dir, "data"))
	d.waitReady(20 * time.Second)
	e2etest.WaitFor(t, 10*time.Second, "the first token request", func() bool {
		return sim.Requests(orgsim.EndpointToken) >= 1
	})
	first := time.Now()
	backoffSeen := 0
	polls := 0
	successSeries := `tokenwatch_check_success{org="` + org + `"}`
	backoffSeries := `tokenwatch_check_backoff_until_timestamp_seconds{org="` + org + `"}`
	for time.Since(first) < window {
		d.failIfExited("during the observation window")
		m := d.metrics()
		polls++
		if hasSeries(m, backoffSeries+" ") {
			backoffSeen++
		}
		if v, ok := sample(m, successSeries); ok && v != 0 {
			t.Errorf("%s %v at %s: the org never succeeds", successSeries, v, time.Since(first).Round(time.Millisecond))
		}
		if r, ok := hook.find(began, isAlert(org, "resolved")); ok {
			t.Fatalf("the alert was resolved at %s although the password is still wrong", r.at.Format(time.RFC3339Nano))
		}
		time.Sleep(250 * time.Millisecond) // the pace of observation, not a wait for an event
	}
	attempts := sim.Requests(orgsim.EndpointToken)
	t.Logf("%d token requests in %s with a wrong password (backoff initial 2s, max 8s; without backoff about %d); the backoff gauge was present in %d of %d scrapes",
		attempts, window, int(window/time.Second), backoffSeen, polls)

	if attempts > maxAttempts {
		t.Errorf("%d token requests in %s, want at most %d: tokenwatch does not back off after rejected logins", attempts, window, maxAttempts)
	}
	if attempts < minAttempts {
		t.Errorf("%d token requests in %s, want at least %d: backoff.max 8s is not honoured", attempts, window, minAttempts)
	}
	if backoffSeen == 0 {
		t.Errorf("%s never appeared in /metrics while the org backed off", backoffSeries)
	}
	if v, ok := sample(d.metrics(), successSeries); !ok || v != 0 {
		t.Errorf("at the end /metrics has %s = %v (present %v), want 0", successSeries, v, ok)
	}
	if _, ok := hook.find(began, isAlert(org, "firing")); !ok {
		t.Errorf("no firing alert reached the webhook:\n%s", hook.all())
	}
	if _, ok := hook.find(began, isAlert(org, "resolved")); ok {
		t.Errorf("the alert was resolved:\n%s", hook.all())
	}
	if t.Failed() {
		t.Logf("tokenwatch log:\n%s", d.logs)
	}
}

// TestProbeFloodRespectsBudget sends 1,000 concurrent /probe requests that
// each ask for a fresh check (max_age=0s) of an org whose token endpoint
// takes a second, for several seconds, with a login budget of 20 per hour.
// The org's server must see no more token requests than the budget
// (coalescing makes it a handful), every /probe must be answered with 200 or
// 503, and another org, on its own server and only scheduled every second,
// must keep its schedule throughout.
func TestProbeFloodRespectsBudget(t *testing.T) {
	// Not parallel: the flood would disturb the timing of the other tests,
	// and they its measurement.
	const (
		// The scheduled org logs in every second against this budget too
		// (its own identity: another server): enough for the whole test.
		budget    = 60
		clients   = 1000
		floodTime = 6 * time.Second
		// The schedule is every second; 1,000 clients, the race detector and
		// other test packages share two cores, which stretches a gap to a
		// few seconds. Without separate /probe slots the scheduled org got
		// no check for the whole flood (21 s measured).
		maxGap = 6 * time.Second
	)
	newOrg := func(id string) *orgsim.Org {
		sim := orgsim.New(orgsim.Options{OrgID: id})
		sim.AddUser(orgsim.User{Username: "integration@flood.example", Password: "pw", SecurityToken: "tok"})
		sim.AddApp(orgsim.App{ClientID: "flood-app", ClientSecret: "flood-secret", IntrospectAll: true})
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Close)
		return sim
	}
	slow, scheduled := newOrg("00D5e000000SLOAAA"), newOrg("00D5e000000SCHAAA")
	slow.SetFault(orgsim.EndpointToken, orgsim.Fault{Latency: time.Second})

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "password"), "pwtok\n")
	config := filepath.Join(dir, "tokenwatch.yml")
	writeFile(t, config, fmt.Sprintf(`global:
  schedule: "@every 1s"
  timeout: 5s
  login_budget: %d
orgs:
  - name: slow
    url: %s
    schedule: "@every 1h"
    client: {id: flood-app, secret: flood-secret}
    grant: {type: password, username: integration@flood.example, password_file: password}
  - name: scheduled
    url: %s
    client: {id: flood-app, secret: flood-secret}
    grant: {type: password, username: integration@flood.example, password_file: password}
`, budget, slow.URL(), scheduled.URL()))

	d := startDaemon(t, config, filepath.Join(dir, "data"))
	d.waitReady(20 * time.Second)
	e2etest.WaitFor(t, 20*time.Second, "both orgs' first healthy checks", func() bool {
		m := d.metrics()
		a, okA := sample(m, `tokenwatch_check_success{org="slow"}`)
		b, okB := sample(m, `tokenwatch_check_success{org="scheduled"}`)
		return okA && okB && a == 1 && b == 1
	})

	// Watch the scheduled org's logins at its own server during the flood.
	stopWatch := make(chan struct{})
	watchDone := make(chan time.Duration)
	floodStart := time.Now()
	go func() {
		last, lastAt, worst := scheduled.Requests(orgsim.EndpointToken), floodStart, time.Duration(0)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatch:
				worst = max(worst, time.Since(lastAt))
				watchDone <- worst
				return
			case <-tick.C:
				if n := scheduled.Requests(orgsim.EndpointToken); n != last {
					worst = max(worst, time.Since(lastAt))
					last, lastAt = n, time.Now()
				}
			}
		}
	}()

	slowBefore := slow.Requests(orgsim.EndpointToken)
	client := &http.Client{Transport: &http.Transport{
		MaxConnsPerHost:     clients,
		MaxIdleConnsPerHost: clients,
		MaxIdleConns:        clients,
	}}
	defer client.CloseIdleConnections()
	// Every /probe must be answered within global.probe.timeout (10s by
	// default): a request still waiting 15s after the flood ends hangs.
	ctx, cancel := context.WithTimeout(context.Background(), floodTime+15*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		statuses = map[string]int{}
		sent     atomic.Int64
		wg       sync.WaitGroup
		slowest  time.Duration
		firstErr string
	)
	url := "http://" + d.addr + "/probe?org=slow&max_age=0s"
	for range clients {
		wg.Go(func() {
			for time.Since(floodStart) < floodTime {
				sent.Add(1)
				began := time.Now()
				what, err := probeOnce(ctx, client, url)
				took := time.Since(began)
				mu.Lock()
				if err != nil && firstErr == "" {
					firstErr = err.Error()
				}
				statuses[what]++
				slowest = max(slowest, took)
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	floodEnd := time.Now()
	close(stopWatch)
	worstGap := <-watchDone
	slowLogins := slow.Requests(orgsim.EndpointToken) - slowBefore

	var summary []string
	for what, n := range statuses {
		summary = append(summary, fmt.Sprintf("%s: %d", what, n))
	}
	sort.Strings(summary)
	t.Logf("flood of %d clients for %s (%d /probe requests, answers %s, slowest %s): %d token requests at the slow org's server (budget %d); the scheduled org's longest gap between logins %s",
		clients, floodEnd.Sub(floodStart).Round(time.Millisecond), sent.Load(), strings.Join(summary, ", "), slowest.Round(time.Millisecond),
		slowLogins, budget, worstGap.Round(time.Millisecond))

	d.failIfExited("during the flood")
	// /probe may spend at most half an identity's budget.
	if slowLogins > budget/2 {
		t.Errorf("%d token requests at the slow org's server during the flood, want at most half the login budget %d", slowLogins, budget)
	}
	for what, n := range statuses {
		if what != "200" && what != "503" {
			t.Errorf("%d /probe requests answered %s, want 200 or 503 only", n, what)
		}
	}
	if firstErr != "" {
		t.Errorf("first /probe error: %s", firstErr)
	}
	if worstGap > maxGap {
		t.Errorf("the scheduled org went %s without a login during the flood, want at most %s: /probe checks took the scheduled checks' slots",
			worstGap.Round(time.Millisecond), maxGap)
	}
	if t.Failed() {
		t.Logf("tokenwatch log (last 4000 bytes):\n%s", tail(d.logs.String(), 4000))
	}
}

// probeOnce sends one /probe and names its fate: the status code, or what
// went wrong (a request that hangs until the flood's deadline says so).
func probeOnce(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "request error", err
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "no answer before the deadline", err
		}
		return "transport error", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "body cut short", err
	}
	return fmt.Sprint(resp.StatusCode), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
