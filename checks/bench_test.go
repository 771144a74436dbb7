package checks_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// BenchmarkCheck measures one whole check (token, introspect, probe, revoke)
// against the simulated org on loopback: the client's cost per check, with
// the org's keep-alive connection and, for comparison, a new connection for
// every request. Compare the two as a ratio from one run.
func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name      string
		keepAlive bool
		kind      string
	}{
		{"client_credentials/keep-alive", true, "client_credentials"},
		{"client_credentials/new-connections", false, "client_credentials"},
		{"password-seed-case/keep-alive", true, "password"},
		{"jwt_bearer/keep-alive", true, "jwt_bearer"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := newWorld(b, orgsim.Options{})
			var opts []checks.Option
			if !bc.keepAlive {
				c := checks.NewHTTPClient(nil)
				c.Transport.(*http.Transport).DisableKeepAlives = true
				opts = append(opts, checks.WithHTTPClient(c))
			}
			c := checks.NewChecker(w.target(bc.kind), opts...)
			want := checks.OutcomeOK
			if bc.kind == "password" {
				want = checks.OutcomeIntrospectionNotPermitted
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if res := c.Check(context.Background()); res.Outcome != want {
					b.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
				}
			}
		})
	}
}
