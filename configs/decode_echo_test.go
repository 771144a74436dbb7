package configs

import (
	"errors"
	"strings"
	"testing"
)

// A value of the wrong type is named by its field path and its kind, never
// echoed: it may be a secret put under the wrong key, or hold one.
func TestWrongTypeNeverEchoesTheValue(t *testing.T) {
	const canary = "C4NARY-T1ME0UT-s3cr3t"
	org := "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}%s}\n"
	for _, tc := range []struct {
		name, yaml, path, kind string
	}{
		{"mapping", "global: {timeout: {X: " + canary + "}}\n" + strings.ReplaceAll(org, "%s", ""), "global.timeout", "a mapping"},
		{"list", strings.ReplaceAll(org, "%s", ", timeout: ["+canary+", 1]"), "orgs[0].timeout", "a list"},
		{"number", "global: {probe: {timeout: 42}}\n" + strings.ReplaceAll(org, "%s", ""), "global.probe.timeout", "a number"},
		{"boolean", strings.ReplaceAll(org, "%s", ", expect: {min_lifetime: true}"), "orgs[0].expect.min_lifetime", "a boolean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "", nil)
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Parse error = %v, want Problems", err)
			}
			msg := problems.Error()
			if strings.Contains(msg, canary) || strings.Contains(msg, "C4NARY") || strings.Contains(msg, "42") || strings.Contains(msg, "map[") {
				t.Errorf("the problem echoes the value: %s", msg)
			}
			want := tc.path + ": must be a duration"
			if !strings.Contains(msg, want) || !strings.Contains(msg, "got "+tc.kind) {
				t.Errorf("problems = %q, want %q naming the type (%s)", msg, want, tc.kind)
			}
		})
	}
}
