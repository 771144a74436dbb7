package agent

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
)

// The table is well formed: unique names, a severity and a for: each, a
// rule for every alert, and only the placeholders the agent fills in in the
// summaries of the alerts it raises.
func TestAlertTableIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range Alerts {
		if seen[d.Name] {
			t.Errorf("%s is defined twice", d.Name)
		}
		seen[d.Name] = true
		if d.Severity != SeverityCritical && d.Severity != SeverityWarning {
			t.Errorf("%s: severity %q", d.Name, d.Severity)
		}
		if d.For <= 0 || d.Summary == "" || d.Description == "" || d.Fix == "" {
			t.Errorf("%s: for %s, summary %q, description %q, fix %q: all are needed", d.Name, d.For, d.Summary, d.Description, d.Fix)
		}
		if d.Rule() == "" {
			t.Errorf("%s has no rule: neither Expr nor Outcomes/FailedSteps", d.Name)
		}
		if d.OutcomeBased() && (d.Expr != "" || d.When != "" || d.RulesOnly) {
			t.Errorf("%s: an alert defined by outcomes has its rule and its words generated, and the agent raises it", d.Name)
		}
		if !d.OutcomeBased() && d.When == "" {
			t.Errorf("%s: When is needed for the table of docs/alerting.md", d.Name)
		}
		if d.RulesOnly {
			continue
		}
		if d.Name != AlertExpiresSoon && d.Name != AlertSigningCertificateExpiresSoon && d.Good == nil {
			t.Errorf("%s: the agent needs Good, which checks resolve it", d.Name)
		}
		if s := agentText(d.Summary, "acme", checks.OutcomeTimeout, "7m0s"); strings.Contains(s, "{{") {
			t.Errorf("%s: the summary uses a template the agent does not fill in: %q", d.Name, d.Summary)
		}
	}
	if !slices.Equal(AlertNames, []string{
		AlertIntrospectionInactive, AlertAcquisitionFailed, AlertIntrospectionFailed,
		AlertSignatureMismatch, AlertExpectationFailed, AlertExpiresSoon, AlertCheckFailing,
		AlertSigningCertificateExpiresSoon,
	}) {
		t.Errorf("the agent raises %v", AlertNames)
	}
}

// Every failing outcome belongs to one alert whatever the step, and every
// step (and no step) to one alert: a failing check raises exactly one alert.
func TestEveryOutcomeAndStepHasOneAlert(t *testing.T) {
	owner := map[checks.Outcome]string{}
	for _, d := range Alerts {
		for _, o := range d.Outcomes {
			if o == checks.OutcomeOK || !slices.Contains(checks.AllOutcomes, o) {
				t.Errorf("%s names outcome %q", d.Name, o)
			}
			if owner[o] != "" {
				t.Errorf("outcome %s belongs to %s and %s", o, owner[o], d.Name)
			}
			owner[o] = d.Name
		}
	}
	for _, s := range append([]checks.Step{StepNone}, checks.AllSteps...) {
		var owners []string
		for _, d := range Alerts {
			if slices.Contains(d.FailedSteps, s) {
				owners = append(owners, d.Name)
			}
		}
		if len(owners) != 1 {
			t.Errorf("a failure at step %q belongs to %v, want one alert", s, owners)
		}
	}
}

// selector is one tokenwatch_check_outcome{...} selector of a generated rule.
var selectorRE = regexp.MustCompile(`tokenwatch_check_outcome\{([^}]*)\}`)
var matcherRE = regexp.MustCompile(`(\w+)(=~|!~|=|!=)"([^"]*)"`)

// matches evaluates the label matchers of a selector on a series, as
// Prometheus does: regular expressions are anchored, and a missing label
// is the empty string.
func matches(t *testing.T, matchers string, labels map[string]string) bool {
	t.Helper()
	for _, m := range matcherRE.FindAllStringSubmatch(matchers, -1) {
		name, op, value := m[1], m[2], m[3]
		v := labels[name]
		var ok bool
		switch op {
		case "=":
			ok = v == value
		case "!=":
			ok = v != value
		case "=~", "!~":
			ok = regexp.MustCompile("^(?:" + value + ")$").MatchString(v)
			if op == "!~" {
				ok = !ok
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// The generated rules and the agent's state machine agree: for every
// outcome at every step, the rules whose selectors match the series
// tokenwatch_check_outcome{outcome, step} are exactly the alert the agent
// raises for such a check (none for ok).
func TestRulesSelectWhatTheAgentRaises(t *testing.T) {
	steps := append([]checks.Step{StepNone}, checks.AllSteps...)
	for _, o := range checks.AllOutcomes {
		for _, s := range steps {
			res := &checks.Result{Outcome: o}
			for _, st := range checks.AllSteps {
				so := checks.OutcomeOK
				if st == s {
					so = o
					if o == checks.OutcomeOK {
						so = checks.OutcomeServerError // cannot happen; the outcome decides
					}
				}
				res.Steps = append(res.Steps, checks.StepResult{Step: st, Outcome: so})
			}
			if o == checks.OutcomeOK {
				s = StepNone
				res.Steps = nil
			}
			if got := res.FailedStep(); got != s {
				t.Fatalf("FailedStep = %q, want %q", got, s)
			}
			series := map[string]string{"outcome": string(o), "step": string(s)}
			var fired []string
			for _, d := range Alerts {
				if !d.OutcomeBased() {
					continue
				}
				for _, sel := range selectorRE.FindAllStringSubmatch(d.Rule(), -1) {
					if matches(t, sel[1], series) {
						fired = append(fired, d.Name)
						break
					}
				}
			}
			var want []string
			if a := primaryAlert(res); a != "" {
				want = []string{a}
			}
			if !slices.Equal(fired, want) {
				t.Errorf("outcome %s, step %q: the rules fire %v, the agent raises %v", o, s, fired, want)
			}
		}
	}
}

// The rule of TokenExpiresSoon uses the agent's default threshold and its
// outcomes of a working token.
func TestExpiresSoonRuleFollowsTheAgent(t *testing.T) {
	rule := Alert(AlertExpiresSoon).Rule()
	if !strings.Contains(rule, "time() < 600") || configs.DefaultExpiresSoonThreshold.Seconds() != 600 {
		t.Errorf("the rule's threshold is not the agent's default %s:\n%s", configs.DefaultExpiresSoonThreshold, rule)
	}
	if !strings.Contains(rule, `outcome=~"ok|expectation_failed|revoke_failed"`) {
		t.Errorf("the rule does not read the outcomes of a working token:\n%s", rule)
	}
}

// headingAnchors are the anchors GitHub gives the headings of a Markdown file.
func headingAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	count := map[string]int{}
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := count[a]; n > 0 {
			anchors[a+"-"+string(rune('0'+n))] = true
		} else {
			anchors[a] = true
		}
		count[a]++
	}
	return anchors
}

// Every alert's runbook_url points at a section of docs/alerting.md.
func TestEveryAlertHasARunbookSection(t *testing.T) {
	doc, err := os.ReadFile("../docs/alerting.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(string(doc))
	for _, d := range Alerts {
		if !strings.HasPrefix(d.RunbookURL(), RunbookBase) {
			t.Errorf("%s: runbook_url %s", d.Name, d.RunbookURL())
		}
		if !anchors[d.Anchor()] {
			t.Errorf("%s: docs/alerting.md has no section #%s (a heading %q)", d.Name, d.Anchor(), "#### "+d.Name)
		}
	}
}

// The alerts the agent sends carry runbook_url and, with an external URL,
// a generatorURL that links to the org's row on the status page.
func TestAgentAlertsLinkRunbookAndStatusPage(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
	h.a.externalURL = "https://tokenwatch.example.com/tw/"
	h.check(tokenFailure(checks.OutcomeGrantRejected))
	m := h.s.last()
	if got, want := m.Alert.GeneratorURL, "https://tokenwatch.example.com/tw/#org-acme"; got != want {
		t.Errorf("generatorURL = %q, want %q", got, want)
	}
	if got, want := m.Alert.Annotations["runbook_url"], RunbookBase+"tokenacquisitionfailed"; got != want {
		t.Errorf("runbook_url = %q, want %q", got, want)
	}
	if got, want := m.Alert.Annotations["summary"], "Org acme cannot obtain a token (grant_rejected)"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	h.check(healthy())
	if r := h.s.last(); !r.Alert.Resolved() || r.Alert.GeneratorURL != m.Alert.GeneratorURL {
		t.Errorf("resolve: %+v", r.Alert)
	}

	// Without --web.external-url there is no link.
	h = newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
	h.check(tokenFailure(checks.OutcomeGrantRejected))
	if got := h.s.last().Alert.GeneratorURL; got != "" {
		t.Errorf("generatorURL without an external URL = %q", got)
	}

	if got := GeneratorURL("http://host:9851", "a.b_c-1"); got != "http://host:9851/#org-a.b_c-1" {
		t.Errorf("GeneratorURL = %q", got)
	}
}
