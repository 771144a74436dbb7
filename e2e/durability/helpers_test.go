// Package durability holds the end-to-end tests of tokenwatch's durable
// state and of "doing no harm" (issue 8): the real tokenwatch binary,
// killed with SIGKILL and restarted on the same --storage.path, against
// simulated authorization servers (internal/orgsim, and a strict rotating
// refresh-token server written for this package alone) and a real
// Alertmanager (0.35, built by scripts/build-prometheus.sh).
//
// Every test is bounded in time; it waits for conditions by polling, and
// sleeps only where the wait itself is the experiment (a random moment to
// kill the daemon, a fixed observation window).
package durability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// httpClient answers every helper request within a bound, so that a stuck
// daemon fails the test instead of hanging it.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// daemon is one `tokenwatch run` process.
type daemon struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
	logs *e2etest.Buffer
	done chan struct{}
	err  error // the result of Wait, valid once done is closed
}

// startDaemon starts tokenwatch on config with its durable state in
// storage. It does not wait for readiness (see waitReady): a test that
// kills the daemon at a random moment must not.
func startDaemon(t *testing.T, config, storage string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, addr: e2etest.FreeAddr(t), logs: &e2etest.Buffer{}, done: make(chan struct{})}
	args := append([]string{"run",
		"--config.file=" + config,
		"--web.listen-address=" + d.addr,
		"--storage.path=" + storage,
	}, extra...)
	d.cmd = exec.Command(e2etest.Tokenwatch(t), args...)
	d.cmd.Dir = filepath.Dir(config)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start tokenwatch: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.kill9() })
	return d
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// status describes how the process ended.
func (d *daemon) status() string {
	if !d.exited() {
		return "still running"
	}
	if d.err == nil {
		return "exit status 0"
	}
	return d.err.Error()
}

// exitCode is the process's exit code, -1 while it runs or when a signal ended it.
func (d *daemon) exitCode() int {
	if !d.exited() {
		return -1
	}
	return d.cmd.ProcessState.ExitCode()
}

// failIfExited ends the test when the daemon has stopped on its own.
func (d *daemon) failIfExited(when string) {
	d.t.Helper()
	if d.exited() {
		d.t.Fatalf("tokenwatch exited on its own %s (%s); its log:\n%s", when, d.status(), d.logs)
	}
}

// waitReady waits until /-/ready answers 200, failing at once when the
// process exits first (a refused flag, config or store).
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	e2etest.WaitFor(d.t, timeout, "tokenwatch to be ready", func() bool {
		d.failIfExited("before it was ready")
		code, _, err := d.get("/-/ready")
		return err == nil && code == http.StatusOK
	})
}

// kill9 ends the process with SIGKILL, as a crash or the OOM killer does,
// and reaps it.
func (d *daemon) kill9() {
	if d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.t.Errorf("tokenwatch (pid %d) still runs 10s after SIGKILL", d.cmd.Process.Pid)
	}
}

// waitExit waits for the process to end on its own.
func (d *daemon) waitExit(timeout time.Duration) bool {
	select {
	case <-d.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// get fetches path from the daemon.
func (d *daemon) get(path string) (int, string, error) {
	resp, err := httpClient.Get("http://" + d.addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metrics returns /metrics, "" when it cannot be read.
func (d *daemon) metrics() string {
	code, body, err := d.get("/metrics")
	if err != nil || code != http.StatusOK {
		return ""
	}
	return body
}

// apiOrg is what the tests read of one org in /api/v1/orgs. Loaded is
// looked for both on the org and on its last result: the contract says
// "/api/v1/orgs marks it with "loaded": true" without naming the level.
type apiOrg struct {
	Name   string   `json:"name"`
	State  string   `json:"state"`
	Loaded *bool    `json:"loaded"`
	Last   *apiLast `json:"last"`
}

type apiLast struct {
	Start   time.Time `json:"start"`
	Outcome string    `json:"outcome"`
	Loaded  *bool     `json:"loaded"`
	Token   struct {
		Expiry time.Time `json:"expiry"`
	} `json:"token"`
}

// loaded reports whether the API marks the org's result as loaded from the store.
func (o apiOrg) loaded() bool {
	return (o.Loaded != nil && *o.Loaded) || (o.Last != nil && o.Last.Loaded != nil && *o.Last.Loaded)
}

// orgs reads /api/v1/orgs; nil when it cannot.
func (d *daemon) orgs() map[string]apiOrg {
	code, body, err := d.get("/api/v1/orgs")
	if err != nil || code != http.StatusOK {
		return nil
	}
	var doc struct {
		Orgs []apiOrg `json:"orgs"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil
	}
	m := make(map[string]apiOrg, len(doc.Orgs))
	for _, o := range doc.Orgs {
		m[o.Name] = o
	}
	return m
}

// sample reads one series' value from an exposition.
func sample(metrics, series string) (float64, bool) {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return f, err == nil
		}
	}
	return 0, false
}

// checksTotal sums tokenwatch_checks_total of the org over its outcomes.
func checksTotal(metrics, org string) float64 {
	var n float64
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, `tokenwatch_checks_total{org="`+org+`",`); ok {
			if i := strings.LastIndexByte(rest, ' '); i >= 0 {
				if v, err := strconv.ParseFloat(rest[i+1:], 64); err == nil {
					n += v
				}
			}
		}
	}
	return n
}

// hasSeries reports whether a series of the metric with these labels is present.
func hasSeries(metrics, prefix string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newRand returns a seeded generator and logs the seed; TOKENWATCH_E2E_SEED
// replays a run.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TOKENWATCH_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TOKENWATCH_E2E_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("random seed %d (replay with TOKENWATCH_E2E_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// receiver is a webhook that records every alert it is sent, both from
// Alertmanager and from tokenwatch's own webhook notifier (the payloads
// have one shape).
type receiver struct {
	name string
	srv  *httptest.Server

	mu  sync.Mutex
	got []received
}

type received struct {
	at    time.Time
	alert alertJSON
}

type alertJSON struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
}

func newReceiver(t *testing.T, name string) *receiver {
	rv := &receiver{name: name}
	rv.srv = httptest.NewServer(rv)
	t.Cleanup(rv.srv.Close)
	return rv
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var p struct {
		Version string      `json:"version"`
		Alerts  []alertJSON `json:"alerts"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Version != "4" {
		http.Error(w, "not a version 4 webhook payload", http.StatusBadRequest)
		return
	}
	now := time.Now()
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, a := range p.Alerts {
		rv.got = append(rv.got, received{at: now, alert: a})
	}
}

// find returns the first alert received after since for which match holds.
func (rv *receiver) find(since time.Time, match func(alertJSON) bool) (received, bool) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, g := range rv.got {
		if !g.at.Before(since) && match(g.alert) {
			return g, true
		}
	}
	return received{}, false
}

// wait waits for find to succeed.
func (rv *receiver) wait(t *testing.T, timeout time.Duration, what string, since time.Time, match func(alertJSON) bool) received {
	t.Helper()
	var found received
	e2etest.WaitFor(t, timeout, what+" at "+rv.name, func() bool {
		var ok bool
		found, ok = rv.find(since, match)
		return ok
	})
	return found
}

// all returns everything received, for failure messages.
func (rv *receiver) all() string {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var b strings.Builder
	for _, g := range rv.got {
		fmt.Fprintf(&b, "  %s %s org=%s alertname=%s startsAt=%s endsAt=%s\n", g.at.Format("15:04:05.000"), g.alert.Status,
			g.alert.Labels["org"], g.alert.Labels["alertname"], g.alert.StartsAt.Format(time.RFC3339Nano), g.alert.EndsAt.Format(time.RFC3339Nano))
	}
	return b.String()
}

func isAlert(org, status string) func(alertJSON) bool {
	return func(a alertJSON) bool { return a.Labels["org"] == org && a.Status == status }
}

// alertmanager is a real Alertmanager on loopback that routes every alert
// to a webhook receiver.
type alertmanager struct {
	addr string
	cmd  *exec.Cmd
	logs e2etest.Buffer
	done chan struct{}
}

func startAlertmanager(t *testing.T, bin, dir, hook string) *alertmanager {
	t.Helper()
	am := &alertmanager{addr: e2etest.FreeAddr(t), done: make(chan struct{})}
	config := filepath.Join(dir, "am.yml")
	writeFile(t, config, fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname, org]
  group_wait: 100ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, hook))
	am.cmd = exec.Command(bin,
		"--config.file="+config,
		"--storage.path="+filepath.Join(dir, "am-data"),
		"--web.listen-address="+am.addr,
		"--cluster.listen-address=")
	am.cmd.Stdout, am.cmd.Stderr = &am.logs, &am.logs
	if err := am.cmd.Start(); err != nil {
		t.Fatalf("start alertmanager: %v", err)
	}
	go func() {
		_ = am.cmd.Wait()
		close(am.done)
	}()
	t.Cleanup(func() {
		_ = am.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-am.done:
		case <-time.After(10 * time.Second):
			_ = am.cmd.Process.Kill()
			<-am.done
		}
	})
	e2etest.WaitFor(t, 20*time.Second, "Alertmanager to be ready", func() bool {
		select {
		case <-am.done:
			t.Fatalf("alertmanager exited before it was ready:\n%s", am.logs.String())
		default:
		}
		resp, err := httpClient.Get("http://" + am.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return am
}

// amRecorder stands between tokenwatch and Alertmanager: it records every
// alert tokenwatch posts to /api/v2/alerts, then passes the request on.
// Alertmanager itself merges a re-sent alert into the one it holds and keeps
// the earlier startsAt, so only here is the startsAt tokenwatch chose seen
// for certain.
type amRecorder struct {
	srv *httptest.Server

	mu     sync.Mutex
	posted []postedAlert
}

type postedAlert struct {
	at       time.Time
	labels   map[string]string
	startsAt time.Time
	endsAt   time.Time
}

func newAMRecorder(t *testing.T, amAddr string) *amRecorder {
	rec := &amRecorder{}
	target := &url.URL{Scheme: "http", Host: amAddr}
	proxy := httputil.NewSingleHostReverseProxy(target)
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/api/v2/alerts") {
			var alerts []struct {
				Labels   map[string]string `json:"labels"`
				StartsAt time.Time         `json:"startsAt"`
				EndsAt   time.Time         `json:"endsAt"`
			}
			if json.Unmarshal(b, &alerts) == nil {
				now := time.Now()
				rec.mu.Lock()
				for _, a := range alerts {
					rec.posted = append(rec.posted, postedAlert{at: now, labels: a.Labels, startsAt: a.StartsAt, endsAt: a.EndsAt})
				}
				rec.mu.Unlock()
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// since returns the alerts of org posted at or after t.
func (rec *amRecorder) since(t time.Time, org string) []postedAlert {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []postedAlert
	for _, p := range rec.posted {
		if !p.at.Before(t) && p.labels["org"] == org {
			out = append(out, p)
		}
	}
	return out
}

// amAlert is one alert in Alertmanager's API v2.
type amAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
	Status   struct {
		State string `json:"state"`
	} `json:"status"`
}

// alerts returns the alerts Alertmanager holds for org (active, and by
// default also silenced and inhibited ones; resolved ones are not listed).
func (am *alertmanager) alerts(ctx context.Context, org string) ([]amAlert, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+am.addr+"/api/v2/alerts?filter="+url.QueryEscape(`org="`+org+`"`), nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/alerts answered %s", resp.Status)
	}
	var out []amAlert
	return out, json.NewDecoder(resp.Body).Decode(&out)
}
