package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/exporters/webhook"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// hookReceiver is a webhook that keeps every alert it is sent.
type hookReceiver struct {
	mu     sync.Mutex
	alerts []receivedAlert
	bodies []string
}

type receivedAlert struct {
	status, org, alertname, fix string
	at                          time.Time
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var p webhook.Payload
	if err := json.Unmarshal(b, &p); err != nil || p.Version != "4" {
		http.Error(w, "not a version 4 webhook payload", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodies = append(h.bodies, string(b))
	for _, a := range p.Alerts {
		h.alerts = append(h.alerts, receivedAlert{a.Status, a.Labels["org"], a.Labels["alertname"], a.Annotations["fix"], time.Now()})
	}
}

// first returns the first alert for org with the status, received after t.
func (h *hookReceiver) first(org, alertname, status string, after time.Time) (receivedAlert, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.alerts {
		if a.org == org && a.alertname == alertname && a.status == status && !a.at.Before(after) {
			return a, true
		}
	}
	return receivedAlert{}, false
}

// The "done when": the demo's periodically inactive org produces a
// firing and a resolved notification at a configured webhook. The flaky org
// loses its permission for 3 s in every 9 s here instead of a minute in three.
func TestDemoAlertsAtWebhook(t *testing.T) {
	hook := &hookReceiver{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	addr := e2etest.FreeAddr(t)
	logs := &e2etest.Buffer{}
	cmd := exec.Command(e2etest.Tokenwatch(t), "demo", "--web.listen-address="+addr,
		"--demo.webhook-url="+srv.URL+"/alerts", "--demo.flip-interval=3s", "--demo.schedule=@every 1s")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	start := time.Now()
	var fired receivedAlert
	e2etest.WaitFor(t, 20*time.Second, "the flaky org's firing alert at the webhook", func() bool {
		var ok bool
		fired, ok = hook.first("flaky-introspection", "TokenIntrospectionInactive", "firing", start)
		return ok
	})
	e2etest.WaitFor(t, 20*time.Second, "the flaky org's resolve at the webhook", func() bool {
		_, ok := hook.first("flaky-introspection", "TokenIntrospectionInactive", "resolved", fired.at)
		return ok
	})
	if !strings.Contains(fired.fix, "Introspect All Tokens") {
		t.Errorf("the firing alert's fix annotation: %q", fired.fix)
	}
	if _, ok := hook.first("seed-password-grant", "TokenIntrospectionInactive", "firing", start); !ok {
		t.Errorf("the seed case did not fire")
	}
	// The status page and its JSON twin show the firing alert next to the org.
	resp, err := http.Get("http://" + addr + "/api/v1/orgs")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Orgs []struct {
			Name         string   `json:"name"`
			FiringAlerts []string `json:"firing_alerts"`
		} `json:"orgs"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	seedFiring := false
	for _, o := range list.Orgs {
		seedFiring = seedFiring || (o.Name == "seed-password-grant" && slices.Contains(o.FiringAlerts, "TokenIntrospectionInactive"))
	}
	if !seedFiring {
		t.Errorf("/api/v1/orgs does not show the seed case's firing alert: %+v", list.Orgs)
	}
	if resp, err := http.Get("http://" + addr + "/"); err == nil {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(page), "alert firing: TokenIntrospectionInactive") {
			t.Errorf("the status page does not show the firing alert")
		}
	}
	if !strings.Contains(logs.String(), "go to the given destinations") {
		t.Errorf("the demo does not say where its alerts go:\n%s", logs)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	for _, secret := range []string{"flaky-secret", "seed-secret", "demo-passwordDEMOTOKEN", "acme-cc-secret"} {
		if strings.Contains(strings.Join(hook.bodies, "\n"), secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a demo secret (%.6s...) is in an alert payload or the logs", secret)
		}
	}
}

// TestAlertDestinationsKeepSecrets builds the destinations from a
// configuration holding canary credentials, delivers to destinations that
// fail (echoing what they were sent) and succeed, and finds no credential in
// any payload, log line or metric.
func TestAlertDestinationsKeepSecrets(t *testing.T) {
	const (
		amPassword = "CANARYamBasicPW4r5t"
		amBearer   = "CANARYamBearer6y7u"
		hmacKey    = "CANARYhmacKEY8i9o"
	)
	var mu sync.Mutex
	var seen []string
	capture := func(status int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			seen = append(seen, string(b))
			mu.Unlock()
			w.WriteHeader(status)
			// A misbehaving server that echoes the credentials back.
			io.WriteString(w, "echo "+r.Header.Get("Authorization"))
		}))
	}
	failing, refusing, accepting := capture(503), capture(401), capture(200)
	defer failing.Close()
	defer refusing.Close()
	defer accepting.Close()

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hmac"), []byte(hmacKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Parse([]byte(fmt.Sprintf(`orgs:
  - {name: acme, url: "https://acme.my.salesforce.com", client: {id: a, secret: s}, grant: {type: client_credentials}}
alerting:
  alertmanagers:
    - {url: %q, basic_auth: {username: tokenwatch, password: %s}}
    - {url: %q, bearer_token: %s}
  webhooks:
    - {url: %q, secret_file: hmac}
`, failing.URL+"/prefix", amPassword, refusing.URL, amBearer, accepting.URL+"/hook/T0/B0/pathsecret")), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	dests, err := alertDestinations(cfg.Alerting, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs e2etest.Buffer
	reg := prometheus.NewPedanticRegistry()
	router := notify.NewRouter(notify.RouterOptions{Registerer: reg, MinBackoff: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer func() {
		// One destination never recovers: give up its queue at once.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		router.Stop(ctx)
	}()
	router.Update(dests)
	if got := router.Destinations(); len(got) != 3 || !strings.HasPrefix(got[0], "alertmanager/127.0.0.1:") || !strings.HasPrefix(got[2], "webhook/127.0.0.1:") {
		t.Errorf("destinations = %v", got)
	}
	router.Send(alerting.Message{Alert: alerting.Alert{Status: alerting.StatusFiring,
		Labels:      map[string]string{"alertname": "TokenAcquisitionFailed", "org": "acme"},
		Annotations: map[string]string{"fix": "Check client.secret"}}})
	e2etest.WaitFor(t, 20*time.Second, "failures, a refusal and a success", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 5
	})
	var metrics strings.Builder
	families, _ := reg.Gather()
	for _, f := range families {
		metrics.WriteString(f.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for where, text := range map[string]string{"payloads": strings.Join(seen, "\n"), "logs": logs.String(), "metrics": metrics.String()} {
		for _, secret := range []string{amPassword, amBearer, hmacKey, "dG9rZW53YXRjaDpDQU5BUllhbUJhc2ljUFc0cjV0", "pathsecret"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain a credential (%.10s...)", where, secret)
			}
		}
	}
	if !strings.Contains(logs.String(), "HTTP 503") || !strings.Contains(logs.String(), "HTTP 401") {
		t.Errorf("the logs do not say why sending failed:\n%s", logs.String())
	}
}

// Removing one of two webhooks on the same host leaves the other's name, and
// with it its queue and metric series, as they were.
func TestAlertDestinationNamesSurviveRemovals(t *testing.T) {
	first := configs.Webhook{URL: "https://hooks.example.com/T0/B0/first-secret", Timeout: time.Second}
	second := configs.Webhook{URL: "https://hooks.example.com/T0/B0/second-secret", Timeout: time.Second}
	both, err := alertDestinations(configs.Alerting{Webhooks: []configs.Webhook{first, second}}, "")
	if err != nil {
		t.Fatal(err)
	}
	alone, err := alertDestinations(configs.Alerting{Webhooks: []configs.Webhook{second}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(both) != 2 || len(alone) != 1 {
		t.Fatalf("destinations: %d and %d", len(both), len(alone))
	}
	if both[0].Name == both[1].Name {
		t.Errorf("two webhooks share the name %q", both[0].Name)
	}
	if alone[0].Name != both[1].Name {
		t.Errorf("the second webhook was %q, and %q once the first is removed", both[1].Name, alone[0].Name)
	}
	for _, d := range append(both, alone...) {
		if !strings.HasPrefix(d.Name, "webhook/hooks.example.com/") || strings.Contains(d.Name, "secret") || strings.Contains(d.Name, "T0") {
			t.Errorf("name %q: want webhook/<host>/<hash>, without the path", d.Name)
		}
	}
}
