package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// TestDiagnoseShowsTheOrgsAllowanceAndExpiries: diagnose says what the
// check learned of the org, and warns when it is close.
func TestDiagnoseShowsTheOrgsAllowanceAndExpiries(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	r := &checks.Result{Org: "acme", Outcome: checks.OutcomeOK,
		APIRequests:        &checks.APIRequests{Max: 15000, Remaining: 900},
		SigningCertExpiry:  now.Add(20 * 24 * time.Hour),
		RefreshTokenExpiry: now.Add(60 * 24 * time.Hour)}
	var b bytes.Buffer
	writeDiagnosis(&b, diagnosis{Org: "acme", Result: r}, now)
	out := b.String()
	for _, want := range []string{
		"daily API requests 900 of 15000 remaining (WARNING: below 10%",
		"signing certificate (grant.certificate_file) expires 2026-12-20T12:00:00Z (in 480h0m0s) (WARNING)",
		"refresh token (grant.refresh_token_policy) expires 2027-01-29T12:00:00Z (in 1440h0m0s)\n", // no warning: 60 days
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diagnose lacks %q:\n%s", want, out)
		}
	}
}
