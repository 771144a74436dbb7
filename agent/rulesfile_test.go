package agent_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/tokenwatch/tokenwatch/agent"
	"github.com/tokenwatch/tokenwatch/agent/internal/promrules"
)

// The committed rule file and the tables of docs/alerting.md are what
// `go generate ./agent` writes from the alert definitions.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	committed, err := os.ReadFile(filepath.Join("..", promrules.RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, promrules.Rules()) {
		t.Errorf("%s differs from the alert definitions in agent/alertdefs.go: run go generate ./agent\n%s",
			promrules.RulesPath, firstDifference(committed, promrules.Rules()))
	}
	doc, err := os.ReadFile(filepath.Join("..", promrules.DocPath))
	if err != nil {
		t.Fatal(err)
	}
	want, err := promrules.Doc(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, want) {
		t.Errorf("the tables of %s differ from the alert definitions in agent/alertdefs.go: run go generate ./agent\n%s",
			promrules.DocPath, firstDifference(doc, want))
	}
}

func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n  committed: " + gl + "\n  generated: " + wl
		}
	}
	return ""
}

// The rule file reads back as the definitions say: the hand-written YAML
// of promrules quotes and folds every text faithfully.
func TestRuleFileReadsBackAsDefined(t *testing.T) {
	var file struct {
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
	if err := yaml.Unmarshal(promrules.Rules(), &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Groups) != 2 || file.Groups[0].Name != promrules.RecordingGroup || file.Groups[1].Name != promrules.AlertGroup {
		t.Fatalf("groups: %+v", file.Groups)
	}
	recs := file.Groups[0].Rules
	if len(recs) != len(agent.RecordingRules) {
		t.Fatalf("%d recording rules, want %d", len(recs), len(agent.RecordingRules))
	}
	for i, r := range agent.RecordingRules {
		if recs[i].Record != r.Record || strings.TrimSpace(recs[i].Expr) != strings.TrimSpace(r.Expr) {
			t.Errorf("recording rule %d reads back as %+v", i, recs[i])
		}
	}
	alerts := file.Groups[1].Rules
	if len(alerts) != len(agent.Alerts) {
		t.Fatalf("%d alerts, want %d", len(alerts), len(agent.Alerts))
	}
	for i := range agent.Alerts {
		d, r := &agent.Alerts[i], alerts[i]
		want := map[string]string{"summary": d.Summary, "description": d.Description, "fix": d.Fix, "runbook_url": d.RunbookURL()}
		if r.Alert != d.Name || strings.TrimSpace(r.Expr) != d.Rule() || r.For != model.Duration(d.For).String() ||
			len(r.Labels) != 1 || r.Labels["severity"] != d.Severity {
			t.Errorf("%s reads back as %+v", d.Name, r)
		}
		for k, v := range want {
			if r.Annotations[k] != v {
				t.Errorf("%s: annotation %s reads back as\n  %q\nwant\n  %q", d.Name, k, r.Annotations[k], v)
			}
		}
		if len(r.Annotations) != len(want) {
			t.Errorf("%s: annotations %v", d.Name, r.Annotations)
		}
	}
}
