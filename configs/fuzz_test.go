package configs

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds the loader arbitrary YAML: it must never panic or hang,
// and it returns either a configuration with at least one org or an error;
// problems always name a field path or say what is wrong.
//
//	go test -run='^$' -fuzz=FuzzParse -fuzztime=30s ./configs/
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalSalesforce))
	f.Add(manyOrgs(2))
	f.Add([]byte("global: {timeout: {X: 1}}\n" + minimalSalesforce))
	f.Add([]byte("orgs: [1, [2], {name: x}]\n---\norgs: []\n"))
	f.Add([]byte("orgs:\n  - name: a\n    client: {secret: ${NOPE}}\n    labels: {__x: y}\n"))
	f.Add([]byte("alerting: {webhooks: [{url: 'http://h/x', tls: {ca_file: /dev/zero}}]}\n" + minimalSalesforce))
	f.Fuzz(func(t *testing.T, yaml []byte) {
		cfg, err := Parse(yaml, t.TempDir(), []string{"SET=value"})
		if err == nil {
			if len(cfg.Orgs) == 0 {
				t.Fatal("a configuration without orgs was accepted")
			}
			return
		}
		var ps Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				if strings.TrimSpace(p.Message) == "" {
					t.Fatalf("a problem without a message at %q", p.Path)
				}
			}
		}
	})
}
