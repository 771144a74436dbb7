package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// TestExampleConfigPassesPromtool checks configs/prometheus/prometheus.yml
// with promtool, next to the rules file it loads, as a user would before
// deploying it.
func TestExampleConfigPassesPromtool(t *testing.T) {
	promtool := e2etest.Tool(t, "promtool", "prometheus")
	if _, err := os.Stat(rulesFile); err != nil {
		t.Fatalf("the example loads %s, which is missing: %v", filepath.Base(rulesFile), err)
	}
	out, err := exec.Command(promtool, "check", "config", exampleConfigFile).CombinedOutput()
	if err == nil {
		if !strings.Contains(string(out), "SUCCESS: 1 rule files found") {
			t.Errorf("promtool did not check the rules file with the config:\n%s", out)
		}
		return
	}
	// Debian builds Prometheus without Kubernetes discovery, and its promtool
	// refuses kubernetes_sd_configs. Then promtool checks everything else,
	// the Kubernetes job with the labels discovery would give instead of its
	// discovery block, and this test checks that block.
	if !strings.Contains(string(out), "field kubernetes_sd_configs not found") {
		t.Fatalf("promtool check config %s: %v\n%s", exampleConfigFile, err, out)
	}
	t.Log("this promtool was built without Kubernetes discovery; checking that block here")
	raw, err := os.ReadFile(exampleConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	replaced := 0
	for _, j := range cfg["scrape_configs"].([]any) {
		job := j.(map[string]any)
		sd, ok := job["kubernetes_sd_configs"].([]any)
		if !ok {
			continue
		}
		checkKubernetesSD(t, job["job_name"], sd)
		delete(job, "kubernetes_sd_configs")
		job["static_configs"] = []any{map[string]any{"targets": []any{"10.0.0.1:9851"}}}
		replaced++
	}
	if replaced == 0 {
		t.Fatal("promtool refused kubernetes_sd_configs, but no job has one")
	}
	dir := t.TempDir()
	body, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"prometheus.yml": body, filepath.Base(rulesFile): rules} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err = exec.Command(promtool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS: 1 rule files found") {
		t.Errorf("promtool check config (Kubernetes discovery set aside): %v\n%s", err, out)
	}
}

// checkKubernetesSD checks what upstream Prometheus would: known keys, a
// known role, namespaces as a list of names.
func checkKubernetesSD(t *testing.T, job any, sd []any) {
	t.Helper()
	roles := []string{"node", "pod", "service", "endpoints", "endpointslice", "ingress"}
	keys := []string{"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata",
		"basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "follow_redirects", "enable_http2"}
	for i, c := range sd {
		conf, ok := c.(map[string]any)
		if !ok {
			t.Errorf("job %v: kubernetes_sd_configs[%d] is not a mapping", job, i)
			continue
		}
		for k := range conf {
			if !slices.Contains(keys, k) {
				t.Errorf("job %v: kubernetes_sd_configs[%d]: unknown key %q", job, i, k)
			}
		}
		if role, _ := conf["role"].(string); !slices.Contains(roles, role) {
			t.Errorf("job %v: kubernetes_sd_configs[%d]: role %v, want one of %v", job, i, conf["role"], roles)
		}
		if ns, ok := conf["namespaces"]; ok {
			m, ok := ns.(map[string]any)
			names, isList := m["names"].([]any)
			if !ok || !isList || len(names) == 0 {
				t.Errorf("job %v: kubernetes_sd_configs[%d]: namespaces wants names: [a list]", job, i)
			}
		}
	}
}
