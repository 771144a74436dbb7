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
