package checks

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The OAuth error codes docs/outcomes.md lists for client_rejected and
// grant_rejected are classified as it says: the doc is the test's input, so
// code and doc cannot drift apart (unauthorized_client once did).
func TestTokenErrorCodesFollowTheOutcomeDoc(t *testing.T) {
	doc, err := os.ReadFile("../docs/outcomes.md")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([a-z_]+)`")
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		outcome := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if outcome != string(OutcomeClientRejected) && outcome != string(OutcomeGrantRejected) {
			continue
		}
		c := &Checker{target: Target{Grant: Grant{Type: GrantClientCredentials}}}
		found := 0
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			found++
			if got := c.classifyTokenError(400, &oauthError{Code: m[1]}, 0); string(got) != outcome {
				t.Errorf("%s: classified %s, docs/outcomes.md says %s", m[1], got, outcome)
			}
		}
		if found == 0 {
			t.Errorf("docs/outcomes.md row %s names no error code", outcome)
		}
	}
}

// TestSalesforceErrorTextsFollowTheDoc: every row of docs/outcomes.md's
// table of Salesforce's error texts is classified as it says, with a fix of
// its own rather than the outcome's generic advice.
func TestSalesforceErrorTextsFollowTheDoc(t *testing.T) {
	doc, err := os.ReadFile("../docs/outcomes.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "## Salesforce's error texts")
	if !ok {
		t.Fatal(`docs/outcomes.md has no section "Salesforce's error texts"`)
	}
	table, _, _ = strings.Cut(table, "\n## ")
	target := Target{Provider: ProviderSalesforce, Grant: Grant{Type: GrantPassword}}
	rows := 0
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		rows++
		oe := &oauthError{Code: strings.Trim(strings.TrimSpace(cells[1]), "`"), Description: strings.TrimSpace(cells[2])}
		want := Outcome(strings.Trim(strings.TrimSpace(cells[3]), "`"))
		c := &Checker{target: target}
		if got := c.classifyTokenError(400, oe, 0); got != want {
			t.Errorf("%s %q: classified %s, docs/outcomes.md says %s", oe.Code, oe.Description, got, want)
		}
		if fix := tokenErrorFix(target, want, oe); fix == "" && want != OutcomeRateLimited {
			t.Errorf("%s %q: no fix of its own", oe.Code, oe.Description)
		}
	}
	if rows < 15 {
		t.Errorf("read %d rows of Salesforce's error texts, want the whole table", rows)
	}
}
