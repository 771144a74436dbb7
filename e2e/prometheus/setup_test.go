// Package prometheus tests tokenwatch with a real Prometheus server: the
// server scrapes the tokenwatch binary checking simulated orgs, and every
// query of the Grafana dashboard and the example scrape configuration must
// work against what it stored. Prometheus and promtool are Prometheus 3,
// built by scripts/build-prometheus.sh (scripts/test.sh runs it).
package prometheus

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// Paths of the committed files under test, from this folder.
const (
	dashboardFile     = "../../grafana/dashboards/tokenwatch.json"
	exampleConfigFile = "../../configs/prometheus/prometheus.yml"
	rulesFile         = "../../configs/prometheus/tokenwatch-rules.yml"
)

// start runs a program until the test ends and returns its output so far.
func start(t *testing.T, name string, args ...string) *e2etest.Buffer {
	t.Helper()
	logs := &e2etest.Buffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return logs
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, what, url string, logs *e2etest.Buffer) {
	t.Helper()
	ready := e2etest.Poll(20*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ready {
		t.Fatalf("%s did not become ready at %s; its output:\n%s", what, url, logs)
	}
}

// The orgs the agent checks: two healthy connections and the seed case, a
// working password-grant token its own app may not introspect.
const (
	healthyOrg = "healthy-cc"
	seedOrg    = "seed-case"
)

var orgNames = []string{healthyOrg, "healthy-password", seedOrg}

// startTokenwatch runs the binary on a config of simulated orgs checked every
// two seconds and returns its address.
func startTokenwatch(t *testing.T) string {
	t.Helper()
	bin := e2etest.Tokenwatch(t)
	org := orgsim.New(orgsim.Options{OrgID: "00D5e000000PROMEAA"})
	org.AddUser(orgsim.User{Username: "integration@prom.example", Password: "e2e-password", SecurityToken: "E2ETOKEN"})
	org.AddApp(orgsim.App{ClientID: "cc-app", ClientSecret: "cc-secret", RunAsUser: "integration@prom.example", Scope: "api"})
	org.AddApp(orgsim.App{ClientID: "all-app", ClientSecret: "all-secret", IntrospectAll: true})
	org.AddApp(orgsim.App{ClientID: "seed-app", ClientSecret: "seed-secret"})
	if err := org.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(org.Close)

	// The seed case's alert goes to a webhook that accepts everything, so
	// that the alert and notification metrics have something to show.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(hook.Close)

	dir := t.TempDir()
	config := filepath.Join(dir, "tokenwatch.yml")
	body := fmt.Sprintf(`global:
  schedule: "@every 2s"
  timeout: 3s
orgs:
  - name: %[2]s
    url: %[1]s
    client: {id: cc-app, secret: cc-secret}
    grant: {type: client_credentials}
    labels: {team: crm}
  - name: healthy-password
    url: %[1]s
    client: {id: all-app, secret: all-secret}
    grant: {type: password, username: integration@prom.example, password: e2e-passwordE2ETOKEN}
  - name: %[3]s
    url: %[1]s
    client: {id: seed-app, secret: seed-secret}
    grant: {type: password, username: integration@prom.example, password: e2e-passwordE2ETOKEN}
    labels: {team: integrations}
alerting:
  failure_threshold: 2
  webhooks:
    - url: %[4]s/hook
`, org.URL(), healthyOrg, seedOrg, hook.URL)
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := e2etest.FreeAddr(t)
	logs := start(t, bin, "--config.file="+config, "--web.listen-address="+addr, "--storage.path="+t.TempDir())
	waitHTTP(t, "tokenwatch", "http://"+addr+"/-/ready", logs)
	return addr
}

// scrapeConfig is the example configuration, rewritten to run here: every
// job of the example keeps its relabelling, aimed at this test's addresses.
//
//   - tokenwatch scrapes the agent.
//   - tokenwatch-kubernetes gets, instead of Kubernetes discovery, the labels
//     discovery would give two pods: tokenwatch's metrics port (pointed at
//     Prometheus itself, so the agent's series are not stored twice) and
//     another port of the same pod, which the relabelling must drop.
//   - tokenwatch-probe probes the healthy org.
func scrapeConfig(t *testing.T, agentAddr, promAddr string) []byte {
	t.Helper()
	raw, err := os.ReadFile(exampleConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	// Rules and Alertmanager are other tests' subject.
	delete(cfg, "rule_files")
	delete(cfg, "alerting")
	cfg["global"] = map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"}
	jobs, _ := cfg["scrape_configs"].([]any)
	seen := map[string]bool{}
	for _, j := range jobs {
		job := j.(map[string]any)
		name, _ := job["job_name"].(string)
		seen[name] = true
		switch name {
		case "tokenwatch":
			job["static_configs"] = []any{map[string]any{"targets": []any{agentAddr}}}
		case "tokenwatch-kubernetes":
			delete(job, "kubernetes_sd_configs")
			pod := func(addr, port string) map[string]any {
				return map[string]any{"targets": []any{addr}, "labels": map[string]any{
					"__meta_kubernetes_namespace":                           "monitoring",
					"__meta_kubernetes_pod_name":                            "tokenwatch-0",
					"__meta_kubernetes_pod_label_app_kubernetes_io_name":    "tokenwatch",
					"__meta_kubernetes_pod_container_port_name":             port,
					"__meta_kubernetes_pod_label_app_kubernetes_io_version": "test",
				}}
			}
			job["static_configs"] = []any{pod(promAddr, "http-metrics"), pod(agentAddr, "debug")}
		case "tokenwatch-probe":
			job["scrape_interval"], job["scrape_timeout"] = "2s", "2s"
			job["static_configs"] = []any{map[string]any{"targets": []any{healthyOrg}}}
			found := false
			for _, r := range job["relabel_configs"].([]any) {
				rule := r.(map[string]any)
				if rule["target_label"] == "__address__" {
					rule["replacement"] = agentAddr
					found = true
				}
			}
			if !found {
				t.Fatal("the example's probe job sets no __address__: where would Prometheus send /probe?")
			}
		default:
			t.Fatalf("the example has a job %q this test does not know how to run", name)
		}
	}
	for _, name := range []string{"tokenwatch", "tokenwatch-kubernetes", "tokenwatch-probe"} {
		if !seen[name] {
			t.Fatalf("the example has no job %q", name)
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startPrometheus runs the real server scraping the agent and returns its
// API client.
func startPrometheus(t *testing.T, agentAddr string) *promAPI {
	t.Helper()
	bin := e2etest.Tool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	addr := e2etest.FreeAddr(t)
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, scrapeConfig(t, agentAddr, addr), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := start(t, bin,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	waitHTTP(t, "prometheus", "http://"+addr+"/-/ready", logs)
	return &promAPI{base: "http://" + addr, logs: logs}
}

// promAPI speaks Prometheus' HTTP API.
type promAPI struct {
	base string
	logs *e2etest.Buffer
}

// sample is one series of an instant vector.
type sample struct {
	Metric map[string]string
	Value  float64
}

// queryError is Prometheus refusing a query, as opposed to a transport failure.
type queryError struct{ errorType, msg string }

func (e *queryError) Error() string { return e.errorType + ": " + e.msg }

// get calls an API path and decodes the data of a successful answer.
func (p *promAPI) get(path string, params url.Values, data any) error {
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var envelope struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return fmt.Errorf("%s answered %d, not JSON: %.200s", path, resp.StatusCode, body)
	}
	if envelope.Status != "success" {
		return &queryError{envelope.ErrorType, envelope.Error}
	}
	return json.Unmarshal(envelope.Data, data)
}

// query evaluates expr now and returns the samples of the instant vector, or
// the one value of a scalar.
func (p *promAPI) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var series []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &series); err != nil {
			return nil, err
		}
		out := make([]sample, 0, len(series))
		for _, s := range series {
			v, err := value(s.Value[1])
			if err != nil {
				return nil, err
			}
			out = append(out, sample{Metric: s.Metric, Value: v})
		}
		return out, nil
	case "scalar":
		var point [2]any
		if err := json.Unmarshal(data.Result, &point); err != nil {
			return nil, err
		}
		v, err := value(point[1])
		return []sample{{Value: v}}, err
	default:
		return nil, fmt.Errorf("result of type %s, want a vector", data.ResultType)
	}
}

func value(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}

// labelValues answers what Grafana's label_values(metric, label) lists.
func (p *promAPI) labelValues(metric, label string) ([]string, error) {
	var values []string
	err := p.get("/api/v1/label/"+label+"/values", url.Values{"match[]": {metric}}, &values)
	return values, err
}

// target is one entry of /api/v1/targets.
type target struct {
	Labels           map[string]string `json:"labels"`
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Health           string            `json:"health"`
	ScrapePool       string            `json:"scrapePool"`
}

func (p *promAPI) targets() (active, dropped []target, err error) {
	var data struct {
		Active  []target `json:"activeTargets"`
		Dropped []target `json:"droppedTargets"`
	}
	err = p.get("/api/v1/targets", url.Values{}, &data)
	return data.Active, data.Dropped, err
}

// eventually retries check until it reports nothing or the time is up, and
// returns its last report.
func eventually(timeout time.Duration, check func() []string) []string {
	var problems []string
	e2etest.Poll(timeout, func() bool {
		problems = check()
		return len(problems) == 0
	})
	return problems
}

func joinLines(lines []string) string { return "\n  " + strings.Join(lines, "\n  ") }
