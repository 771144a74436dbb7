// Package prometheus_test checks the Prometheus rules shipped in this
// directory: promtool accepts them, their unit tests pass, and every alert
// has unit tests that show it firing and staying quiet.
package prometheus_test

import (
	"os"
	"os/exec"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

const (
	rulesFile = "tokenwatch-rules.yml"
	testsFile = "tokenwatch-rules.test.yml"
)

// ruleFile is the part of a Prometheus rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// testFile is the part of a promtool unit test file these tests read.
type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			EvalTime  string `yaml:"eval_time"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// promtool returns the path of promtool. Without it the test skips, except
// under CI=true, where the test set-up must have installed it.
func promtool(t *testing.T) string {
	t.Helper()
	return e2etest.Tool(t, "promtool", "prometheus")
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %v: %v\n%s", args, err, out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, "check", "rules", rulesFile)
}

func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, "test", "rules", testsFile)
}

// TestEveryAlertHasFiringAndQuietCases requires, for every alert of the rule
// file, a unit test where it fires and one where it must not.
func TestEveryAlertHasFiringAndQuietCases(t *testing.T) {
	var rules ruleFile
	var tests testFile
	readYAML(t, rulesFile, &rules)
	readYAML(t, testsFile, &tests)

	if !slices.Contains(tests.RuleFiles, rulesFile) {
		t.Errorf("%s does not load %s (rule_files: %v)", testsFile, rulesFile, tests.RuleFiles)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Alert] = true
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("%s has no alerts", rulesFile)
	}

	firing, quiet := map[string]int{}, map[string]int{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if !alerts[at.Alertname] {
				t.Errorf("test %q at %s expects alert %q, which %s does not define", tc.Name, at.EvalTime, at.Alertname, rulesFile)
			}
			if len(at.ExpAlerts) > 0 {
				firing[at.Alertname]++
			} else {
				quiet[at.Alertname]++
			}
		}
	}
	for name := range alerts {
		if firing[name] == 0 {
			t.Errorf("alert %s has no test in which it fires", name)
		}
		if quiet[name] == 0 {
			t.Errorf("alert %s has no test in which it stays quiet (exp_alerts: [])", name)
		}
	}
}

// TestAlertsAreActionable checks what every alert must carry to be routed
// and acted on: a for: duration, a severity, and the annotations summary,
// description, fix and runbook_url (the alert's section of docs/alerting.md).
func TestAlertsAreActionable(t *testing.T) {
	var rules ruleFile
	readYAML(t, rulesFile, &rules)
	for _, g := range rules.Groups {
		for i, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			where := g.Name + "/" + r.Alert
			if r.For == "" {
				t.Errorf("%s (rule %d): no for: duration, so one bad scrape fires it", where, i)
			}
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" {
				t.Errorf("%s (rule %d): severity %q, want critical or warning", where, i, sev)
			}
			for _, a := range []string{"summary", "description", "fix", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s (rule %d): no %s annotation", where, i, a)
				}
			}
		}
	}
}

// TestAgentAlertNames keeps the names shared with the agent's own alerts, so
// that Alertmanager routes and silences work for alerts from either side.
// The file is generated from the agent's definitions (go generate ./agent;
// agent/rulesfile_test.go checks it is current); this package may not import
// the agent, so the names are listed here.
func TestAgentAlertNames(t *testing.T) {
	var rules ruleFile
	readYAML(t, rulesFile, &rules)
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
		}
	}
	for _, want := range []string{
		"TokenIntrospectionInactive", "TokenAcquisitionFailed", "IntrospectionFailed", "TokenSignatureMismatch",
		"TokenExpectationFailed", "TokenExpiresSoon", "TokenCheckFailing",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("%s does not define %s", rulesFile, want)
		}
	}
}
