// Package alerting tests the agent's own alerts end to end: the tokenwatch
// binary against a simulated org, sending to a real Alertmanager (0.35,
// built by scripts/build-prometheus.sh) that routes to a webhook receiver
// run by the test, and straight to a signed webhook.
package alerting

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/exporters/webhook"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// Canary credentials: none may appear in an alert, a log or a metric.
const (
	canaryClientSecret = "CANARYalertCLIENTsecret1q2w"
	canaryPassword     = "CANARYalertPASSWORD3e4r"
	canarySecToken     = "CANARYalertSECTOKEN5t6y"
	canaryAMPassword   = "CANARYalertmanagerPW7u8i"
	canaryHMACKey      = "CANARYwebhookHMACkey9o0p"
	org                = "acme-seed"
)

func TestAlertsThroughAlertmanager(t *testing.T) {
	amBin := e2etest.Tool(t, "alertmanager", "prometheus-alertmanager")
	twBin := e2etest.Tokenwatch(t)
	dir := t.TempDir()

	// The simulated org: a password-grant connection whose app may introspect
	// all tokens until the test takes that away.
	sim := orgsim.New(orgsim.Options{OrgID: "00D5e000000ALRTAA"})
	sim.AddUser(orgsim.User{Username: "integration@alert.example", Password: canaryPassword, SecurityToken: canarySecToken})
	sim.AddApp(orgsim.App{ClientID: "monitor-app", ClientSecret: canaryClientSecret, IntrospectAll: true})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	viaAM := &receiver{name: "Alertmanager's webhook"}
	amHook := httptest.NewServer(viaAM)
	defer amHook.Close()
	direct := &receiver{name: "the direct webhook", key: []byte(canaryHMACKey)}
	directHook := httptest.NewServer(direct)
	defer directHook.Close()

	am := &alertmanager{bin: amBin, dir: dir, addr: e2etest.FreeAddr(t), hook: amHook.URL + "/am"}
	am.writeConfig(t)
	am.start(t)
	defer am.stop(t)

	write(t, filepath.Join(dir, "password"), canaryPassword+canarySecToken+"\n")
	write(t, filepath.Join(dir, "am-password"), canaryAMPassword+"\n")
	write(t, filepath.Join(dir, "hmac-key"), canaryHMACKey+"\n")
	config := filepath.Join(dir, "tokenwatch.yml")
	write(t, config, fmt.Sprintf(`global:
  schedule: "@every 1s"
  timeout: 3s
orgs:
  - name: %s
    url: %s
    client: {id: monitor-app, secret: %s}
    grant: {type: password, username: integration@alert.example, password_file: password}
    labels: {team: integrations}
alerting:
  failure_threshold: 2
  success_threshold: 1
  resend_interval: 2s
  alertmanagers:
    - url: http://%s
      basic_auth: {username: tokenwatch, password_file: am-password}
      timeout: 2s
  webhooks:
    - url: %s/direct
      secret_file: hmac-key
`, org, sim.URL(), canaryClientSecret, am.addr, directHook.URL))

	tw := &process{name: "tokenwatch"}
	twAddr := e2etest.FreeAddr(t)
	tw.start(t, twBin, "--config.file="+config, "--web.listen-address="+twAddr, "--log.level=debug", "--storage.path="+t.TempDir())
	defer tw.stop(t)
	metrics := func() string {
		resp, err := http.Get("http://" + twAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	e2etest.WaitFor(t, 20*time.Second, "the org's first healthy check", func() bool {
		return strings.Contains(metrics(), `tokenwatch_check_success{org="`+org+`"} 1`)
	})

	// 1. The permission is taken away: the alert reaches the receiver through Alertmanager.
	changed := time.Now()
	sim.SetIntrospectAll("monitor-app", false)
	fired := viaAM.wait(t, "firing", changed)
	directFired := direct.wait(t, "firing", changed)
	t.Logf("introspection denied -> firing: %s through Alertmanager, %s at the direct webhook",
		fired.at.Sub(changed).Round(time.Millisecond), directFired.at.Sub(changed).Round(time.Millisecond))
	for k, want := range map[string]string{
		"alertname": "TokenIntrospectionInactive", "org": org, "reason": "introspection_not_permitted",
		"severity": "critical", "team": "integrations",
	} {
		if got := fired.alert.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	ann := fired.alert.Annotations
	if !strings.Contains(ann["fix"], "Introspect All Tokens") || !strings.Contains(ann["summary"], org) ||
		!strings.Contains(ann["description"], "consecutive bad checks") {
		t.Errorf("annotations = %q", ann)
	}
	if !strings.Contains(metrics(), `tokenwatch_alert_firing{alertname="TokenIntrospectionInactive",org="`+org+`"} 1`) {
		t.Errorf("tokenwatch_alert_firing does not show the firing alert")
	}

	// 2. The permission is back: the resolve follows the same way.
	changed = time.Now()
	sim.SetIntrospectAll("monitor-app", true)
	resolved := viaAM.wait(t, "resolved", changed)
	directResolved := direct.wait(t, "resolved", changed)
	t.Logf("introspection allowed -> resolved: %s through Alertmanager, %s at the direct webhook",
		resolved.at.Sub(changed).Round(time.Millisecond), directResolved.at.Sub(changed).Round(time.Millisecond))
	if strings.Contains(metrics(), "tokenwatch_alert_firing{") {
		t.Errorf("tokenwatch_alert_firing still shows the resolved alert")
	}

	// 3. Alertmanager is down when the alert fires: tokenwatch retries and
	// delivers once it is back on the same port.
	am.stop(t)
	amName := notify.DestinationName("alertmanager", "http://"+am.addr)
	failuresBefore := sample(metrics(), `tokenwatch_notifications_failed_total{destination="`+amName+`"}`)
	changed = time.Now()
	sim.SetIntrospectAll("monitor-app", false)
	direct.wait(t, "firing", changed)
	e2etest.WaitFor(t, 20*time.Second, "tokenwatch to fail sending to the stopped Alertmanager", func() bool {
		return sample(metrics(), `tokenwatch_notifications_failed_total{destination="`+amName+`"}`) > failuresBefore
	})
	// Down a while longer: the first send and two retries fail.
	e2etest.WaitFor(t, 20*time.Second, "two retries to fail as well", func() bool {
		return sample(metrics(), `tokenwatch_notifications_failed_total{destination="`+amName+`"}`) >= failuresBefore+3
	})
	restarted := time.Now()
	am.start(t)
	late := viaAM.wait(t, "firing", restarted)
	t.Logf("Alertmanager down when the alert fired: delivered %s after its restart (%s after the state change)",
		late.at.Sub(restarted).Round(time.Millisecond), late.at.Sub(changed).Round(time.Millisecond))
	if late.alert.Labels["alertname"] != "TokenIntrospectionInactive" || !strings.Contains(late.alert.Annotations["fix"], "Introspect All Tokens") {
		t.Errorf("late alert = %+v", late.alert)
	}
	changed = time.Now()
	sim.SetIntrospectAll("monitor-app", true)
	resolved = viaAM.wait(t, "resolved", changed)
	t.Logf("introspection allowed again -> resolved through Alertmanager: %s", resolved.at.Sub(changed).Round(time.Millisecond))

	// Nothing secret anywhere.
	finalMetrics := metrics()
	tw.stop(t)
	am.stop(t)
	outputs := map[string]string{
		"tokenwatch logs":           tw.logs.String(),
		"metrics":                   finalMetrics,
		"payloads via Alertmanager": viaAM.all(),
		"direct webhook payloads":   direct.all(),
		"alertmanager logs":         am.proc.logs.String(),
	}
	for where, text := range outputs {
		for _, secret := range []string{canaryClientSecret, canaryPassword, canarySecToken, canaryAMPassword, canaryHMACKey} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain a secret (%.12s...)", where, secret)
			}
		}
	}
	if !strings.Contains(tw.logs.String(), "alert firing") || !strings.Contains(tw.logs.String(), "alert resolved") {
		t.Errorf("tokenwatch did not log the alert's state changes")
	}
	if t.Failed() {
		t.Logf("tokenwatch logs:\n%s", tw.logs.String())
	}
}

// receiver is a webhook that records the alerts it is sent, one entry per
// alert with the time it arrived. With a key, it verifies the signature.
type receiver struct {
	name string
	key  []byte

	mu     sync.Mutex
	got    []received
	bodies []string
}

type received struct {
	at    time.Time
	alert alertJSON
}

type alertJSON struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if rv.key != nil && !webhook.Verify(rv.key, b, r.Header.Get(webhook.SignatureHeader)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
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
	rv.bodies = append(rv.bodies, string(b))
	for _, a := range p.Alerts {
		rv.got = append(rv.got, received{at: now, alert: a})
	}
}

// wait returns the first TokenIntrospectionInactive alert with the status
// that arrived after since.
func (rv *receiver) wait(t *testing.T, status string, since time.Time) received {
	t.Helper()
	var found received
	e2etest.WaitFor(t, 30*time.Second, status+" at "+rv.name, func() bool {
		rv.mu.Lock()
		defer rv.mu.Unlock()
		for _, g := range rv.got {
			if g.at.After(since) && g.alert.Status == status && g.alert.Labels["org"] == org &&
				g.alert.Labels["alertname"] == "TokenIntrospectionInactive" {
				found = g
				return true
			}
		}
		return false
	})
	return found
}

func (rv *receiver) all() string {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return strings.Join(rv.bodies, "\n")
}

// alertmanager is a real Alertmanager on loopback, protected by basic auth.
type alertmanager struct {
	bin, dir, addr, hook string
	proc                 *process
}

func (am *alertmanager) writeConfig(t *testing.T) {
	t.Helper()
	write(t, filepath.Join(am.dir, "am.yml"), fmt.Sprintf(`route:
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
`, am.hook))
	hash, err := bcrypt.GenerateFromPassword([]byte(canaryAMPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(am.dir, "am-web.yml"), "basic_auth_users:\n  tokenwatch: "+string(hash)+"\n")
}

func (am *alertmanager) start(t *testing.T) {
	t.Helper()
	am.proc = &process{name: "alertmanager"}
	am.proc.start(t, am.bin,
		"--config.file="+filepath.Join(am.dir, "am.yml"),
		"--web.config.file="+filepath.Join(am.dir, "am-web.yml"),
		"--storage.path="+filepath.Join(am.dir, "am-data"),
		"--web.listen-address="+am.addr,
		"--cluster.listen-address=")
	e2etest.WaitFor(t, 20*time.Second, "Alertmanager to be ready", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+am.addr+"/-/ready", nil)
		req.SetBasicAuth("tokenwatch", canaryAMPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (am *alertmanager) stop(t *testing.T) {
	if am.proc != nil {
		am.proc.stop(t)
	}
}

// process is a child process whose output is kept.
type process struct {
	name string
	cmd  *exec.Cmd
	logs e2etest.Buffer
	done chan struct{}
}

func (p *process) start(t *testing.T, bin string, args ...string) {
	t.Helper()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	if p.cmd == nil || p.done == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop within 15s of SIGTERM", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sample reads one series' value from an exposition; 0 when absent.
func sample(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return 0
}
