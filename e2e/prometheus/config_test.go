package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// TestExampleConfigPassesPromtool checks the whole of
// configs/prometheus/prometheus.yml with promtool, Kubernetes discovery
// included, next to the rules file it loads, as a user would before
// deploying it.
func TestExampleConfigPassesPromtool(t *testing.T) {
	promtool := e2etest.Tool(t, "promtool", "prometheus")
	if _, err := os.Stat(rulesFile); err != nil {
		t.Fatalf("the example loads %s, which is missing: %v", filepath.Base(rulesFile), err)
	}
	out, err := exec.Command(promtool, "check", "config", exampleConfigFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config %s: %v\n%s", exampleConfigFile, err, out)
	}
	if !strings.Contains(string(out), "SUCCESS: 1 rule files found") {
		t.Errorf("promtool did not check the rules file with the config:\n%s", out)
	}
	if !strings.Contains(string(out), exampleConfigFile+" is valid prometheus config file syntax") {
		t.Errorf("promtool did not say the config is valid:\n%s", out)
	}
}
