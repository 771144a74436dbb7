package prometheus

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// pendingMetrics are metrics a panel may read without data here, each with
// the reason.
var pendingMetrics = map[string]string{
	"tokenwatch_signing_certificate_expiry_timestamp_seconds": "no org here signs with a grant.certificate_file",
	"ALERTS": "this Prometheus loads no rules (the rules have their own test)",
}

// mayBeEmpty are panels that count the orgs in a condition none of the
// orgs here is in; they show 0 then.
var mayBeEmpty = map[string]bool{
	"Orgs below 10% of API requests": true,
}

// dashboardVariables are the dashboard's variables as Grafana substitutes
// them before it sends a query: "All" is .* (and nothing for the free
// label matchers), and the intervals are what Grafana computes. The data
// source variable is not part of a query.
func dashboardVariables(set map[string]string) *strings.Replacer {
	values := map[string]string{"job": ".*", "instance": ".*", "team": ".*", "env": ".*", "labels": "", "org": ".*",
		"org_detail": healthyOrg}
	for k, v := range set {
		values[k] = v
	}
	// Longest names first: $org_detail is not $org followed by _detail.
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	pairs := []string{"$__rate_interval", "15s", "$__interval", "5s", "$__range", "1m"}
	for _, name := range names {
		pairs = append(pairs, "${"+name+"}", values[name], "$"+name, values[name])
	}
	return strings.NewReplacer(pairs...)
}

var grafanaVariables = dashboardVariables(nil)

// dashboardQuery is one query of one panel of the committed dashboard.
type dashboardQuery struct {
	panel, row, refID string
	expr              string // as sent to Prometheus, variables substituted
	raw               string // as in the dashboard
}

func (q dashboardQuery) String() string {
	return fmt.Sprintf("%s / %q query %s: %s", q.row, q.panel, q.refID, q.expr)
}

// pending returns the pending metric the query reads, if any.
func (q dashboardQuery) pending() string {
	for metric := range pendingMetrics {
		if regexp.MustCompile(`\b` + metric + `\b`).MatchString(q.expr) {
			return metric
		}
	}
	return ""
}

type dashboardPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// dashboardQueries reads every panel query of the committed dashboard.
func dashboardQueries(t *testing.T) (queries []dashboardQuery, orgVariable string) {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	row := ""
	var add func(p dashboardPanel)
	add = func(p dashboardPanel) {
		if p.Type == "row" {
			row = p.Title
			for _, inner := range p.Panels {
				add(inner)
			}
			return
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s / %q has no query", row, p.Title)
		}
		for _, target := range p.Targets {
			queries = append(queries, dashboardQuery{panel: p.Title, row: row, refID: target.RefID,
				expr: grafanaVariables.Replace(target.Expr), raw: target.Expr})
		}
	}
	for _, p := range d.Panels {
		add(p)
	}
	// Annotations are queries too: they mark alerts on every time panel.
	for _, a := range d.Annotations.List {
		queries = append(queries, dashboardQuery{panel: a.Name, row: "annotations", refID: "annotation",
			expr: grafanaVariables.Replace(a.Expr), raw: a.Expr})
	}
	for _, v := range d.Templating.List {
		if v.Name == "org" {
			orgVariable, _ = v.Query.(string)
		}
	}
	return queries, orgVariable
}

// fleetCounts are what the fleet row's numbers must say about the three
// orgs of startTokenwatch: a user reads these first.
var fleetCounts = map[string]float64{
	"Orgs configured":      3,
	"Orgs healthy":         2,
	"Orgs failing":         1,
	"Orgs not checked yet": 0,
	"Alerts firing":        1, // the seed case's TokenIntrospectionInactive
}

// TestDashboardAgainstPrometheus runs every query of the committed Grafana
// dashboard against a real Prometheus scraping the agent, as Grafana would
// with the org variable set to a healthy org: each must parse and return data.
func TestDashboardAgainstPrometheus(t *testing.T) {
	e2etest.Tool(t, "prometheus", "prometheus")
	queries, orgVariable := dashboardQueries(t)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	agent := startTokenwatch(t)
	prom := startPrometheus(t, agent)

	// A query Prometheus refuses is wrong however long we wait.
	var runnable []dashboardQuery
	for _, q := range queries {
		if strings.Contains(q.expr, "$") {
			t.Errorf("%s: a variable the test does not substitute", q)
			continue
		}
		var qe *queryError
		if _, err := prom.query(q.expr); errors.As(err, &qe) {
			t.Errorf("%s: Prometheus refuses it: %v", q, err)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		runnable = append(runnable, q)
	}

	pendingSeen := map[string]bool{}
	problems := eventually(45*time.Second, func() []string {
		var problems []string
		for _, q := range runnable {
			samples, err := prom.query(q.expr)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", q, err))
				continue
			}
			if metric := q.pending(); metric != "" {
				pendingSeen[q.String()] = len(samples) > 0
				continue
			}
			if len(samples) == 0 && mayBeEmpty[q.panel] {
				continue
			}
			if len(samples) == 0 {
				problems = append(problems, fmt.Sprintf("%s: no data", q))
				continue
			}
			if !slices.ContainsFunc(samples, func(s sample) bool { return !math.IsNaN(s.Value) }) {
				problems = append(problems, fmt.Sprintf("%s: only NaN", q))
				continue
			}
			if want, ok := fleetCounts[q.panel]; ok && q.row == "Fleet overview" && samples[0].Value != want {
				problems = append(problems, fmt.Sprintf("%s: shows %v, want %v", q, samples[0].Value, want))
			}
		}
		return problems
	})
	if len(problems) > 0 {
		t.Errorf("after 45 s of scrapes, %d dashboard queries fail:%s", len(problems), joinLines(problems))
	}
	for q, hasData := range pendingSeen {
		if hasData {
			t.Logf("%s: returns data now; remove its metric from pendingMetrics", q)
		} else {
			t.Logf("%s: no data yet, allowed while its metric is pending", q)
		}
	}

	t.Run("the org variable lists every org", func(t *testing.T) {
		m := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`).FindStringSubmatch(grafanaVariables.Replace(orgVariable))
		if m == nil {
			t.Fatalf("org variable query %q is not label_values(selector, label)", orgVariable)
		}
		got, err := prom.labelValues(m[1], m[2])
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(orgNames)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("the org variable offers %q, want %q", got, want)
		}
	})
	t.Run("the variables filter every panel", func(t *testing.T) {
		testVariablesFilter(t, prom, runnable)
	})
	t.Run("example probe job", func(t *testing.T) {
		samples, err := prom.query(`{job="tokenwatch-probe", __name__=~"tokenwatch_.+"}`)
		if err != nil {
			t.Fatal(err)
		}
		if len(samples) != 1 || samples[0].Metric["__name__"] != "tokenwatch_probe_success" ||
			samples[0].Metric["org"] != healthyOrg || samples[0].Value != 1 {
			t.Errorf("the probe job stored %v, want only tokenwatch_probe_success{org=%q} 1", samples, healthyOrg)
		}
	})
	t.Run("example Kubernetes job", func(t *testing.T) {
		active, dropped, err := prom.targets()
		if err != nil {
			t.Fatal(err)
		}
		var kept []map[string]string
		for _, tg := range active {
			if tg.ScrapePool == "tokenwatch-kubernetes" {
				kept = append(kept, tg.Labels)
			}
		}
		if len(kept) != 1 || kept[0]["job"] != "tokenwatch" || kept[0]["pod"] != "tokenwatch-0" || kept[0]["namespace"] != "monitoring" {
			t.Errorf("the Kubernetes job keeps %v, want the metrics port of pod tokenwatch-0 as job tokenwatch", kept)
		}
		var droppedPorts []string
		for _, tg := range dropped {
			if tg.DiscoveredLabels["job"] == "tokenwatch-kubernetes" {
				droppedPorts = append(droppedPorts, tg.DiscoveredLabels["__meta_kubernetes_pod_container_port_name"])
			}
		}
		if !slices.Equal(droppedPorts, []string{"debug"}) {
			t.Errorf("the Kubernetes job drops ports %q, want the pod's other port, debug", droppedPorts)
		}
	})
	if t.Failed() {
		t.Logf("prometheus output:\n%s", prom.logs)
	}
}

// testVariablesFilter sets each variable of the dashboard to a value that
// picks nothing, the others left at All: every query it applies to must
// then return nothing. The tokenwatch row has no org, so only job and
// instance apply to it. Then it picks one org by a label: the fleet row
// counts it alone, and every query answering per org answers for it only.
func testVariablesFilter(t *testing.T, prom *promAPI, queries []dashboardQuery) {
	nothing := map[string]string{
		"job": "no-such-job", "instance": "no-such-instance", "team": "no-such-team", "env": "no-such-env",
		"labels": `provider="no-such-provider"`, "org": "no-such-org", "org_detail": "no-such-org",
	}
	for name, value := range nothing {
		t.Run(name, func(t *testing.T) {
			vars := dashboardVariables(map[string]string{name: value})
			for _, q := range queries {
				if q.row == "tokenwatch itself" && name != "job" && name != "instance" {
					continue
				}
				// Only the org row shows the org in detail.
				if name == "org_detail" && !strings.HasPrefix(q.row, "Org: ") {
					continue
				}
				if !regexp.MustCompile(`\$` + name + `\b`).MatchString(q.raw) {
					t.Errorf("%s: does not use $%s", q, name)
					continue
				}
				expr := vars.Replace(q.raw)
				samples, err := prom.query(expr)
				if err != nil {
					t.Errorf("%s with %s=%s: %v", q, name, value, err)
					continue
				}
				if len(samples) > 0 {
					t.Errorf("%s with %s=%s picking nothing still answers %v", q, name, value, samples)
				}
			}
		})
	}

	// The seed case is the one org of team integrations; healthy-cc the
	// one of team crm, picked through the free label matchers.
	for _, pick := range []struct {
		vars map[string]string
		org  string
	}{
		{map[string]string{"team": "integrations", "org_detail": seedOrg}, seedOrg},
		{map[string]string{"labels": `team="crm"`}, healthyOrg},
		{map[string]string{"org": healthyOrg}, healthyOrg},
		// The org in detail is one the others do not pick: the org row is empty.
		{map[string]string{"org": healthyOrg, "org_detail": seedOrg}, healthyOrg},
	} {
		t.Run(fmt.Sprintf("pick %v", pick.vars), func(t *testing.T) {
			vars := dashboardVariables(pick.vars)
			for _, q := range queries {
				if q.row == "tokenwatch itself" {
					continue
				}
				samples, err := prom.query(vars.Replace(q.raw))
				if err != nil {
					t.Errorf("%s: %v", q, err)
					continue
				}
				for _, s := range samples {
					if org, ok := s.Metric["org"]; ok && org != pick.org {
						t.Errorf("%s: answers for org %s, want only %s", q, org, pick.org)
						break
					}
				}
				if q.panel == "Orgs configured" && q.row == "Fleet overview" && (len(samples) != 1 || samples[0].Value != 1) {
					t.Errorf("%s: counts %v, want 1 org", q, samples)
				}
			}
		})
	}
}
