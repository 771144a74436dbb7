package configs

import (
	"fmt"
	"strings"
	"testing"
)

// manyOrgs is a configuration of n generic client-credentials orgs, each
// with its own endpoints, client and labels, as a platform holding one
// connection per customer writes it.
func manyOrgs(n int) []byte {
	var b strings.Builder
	b.WriteString("global:\n  schedule: \"@every 1m\"\norgs:\n")
	for i := range n {
		fmt.Fprintf(&b, `  - name: org-%[1]d
    provider: generic
    token_url: https://idp%[1]d.example.com/token
    introspection_url: https://idp%[1]d.example.com/introspect
    userinfo_url: https://idp%[1]d.example.com/userinfo
    revocation_url: https://idp%[1]d.example.com/revoke
    client: {id: client-%[1]d, secret: secret-%[1]d}
    grant: {type: client_credentials}
    labels: {team: t%[2]d, env: prod}
`, i, i%10)
	}
	return []byte(b.String())
}

// BenchmarkParse measures loading configurations of growing size; the
// ratio between sizes shows whether parsing stays linear. A 10,000-org
// file must load (and reload) in under 2 s on the project's 2-core machines.
//
//	go test -run='^$' -bench=Parse -benchtime=3x ./configs/
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		yaml := manyOrgs(n)
		b.Run(fmt.Sprintf("orgs=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(yaml)))
			for b.Loop() {
				cfg, err := Parse(yaml, "", nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(cfg.Orgs) != n {
					b.Fatalf("%d orgs", len(cfg.Orgs))
				}
			}
		})
	}
}
