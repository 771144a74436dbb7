package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkReloadOrgFiles measures the reload that follows a change to one
// org file when 10,000 orgs live in org_files: as one file per org (one
// Kubernetes Secret per org) and as 100 files of 100 orgs. A reload reads
// every file again (secret files included, since those may have rotated),
// so it costs what loading everything costs; this shows what that is.
//
//	go test -run='^$' -bench=ReloadOrgFiles -benchtime=5x ./configs/
//
// Measured on the project's 2-core machine (Go 1.26, linux/amd64,
// 2026-11-30) while other builds shared it, so the figures are upper
// bounds; compare within one run. Three runs, at load averages 16, 9 and 3:
//
//	BenchmarkParse/orgs=10000 (one file, inline secrets)   6.0   1.0   1.1 s/op
//	ReloadOrgFiles/files=10000,orgs_per_file=1             3.6   2.5   2.4 s/op  319 MB/op
//	ReloadOrgFiles/files=100,orgs_per_file=100             3.5   2.4   2.4 s/op  247 MB/op
//
// Opening 10,000 org files instead of 100 adds little; reading a secret
// file per org is most of the difference to BenchmarkParse. A CPU profile
// (-cpuprofile) puts about 60% of a load in decoding the YAML. The daemon
// logs each reload's load_duration and duration (load and apply); with
// 10,000 orgs in 100 files sharing one secret file, at load average 3:
// load 0.9 to 2.0 s, load and apply 1.3 to 2.8 s, and 2.0 to 3.5 s from
// writing a file to its new labels in /metrics (0.5 s of it debouncing).
func BenchmarkReloadOrgFiles(b *testing.B) {
	for _, shape := range []struct{ files, perFile int }{{10000, 1}, {100, 100}} {
		b.Run(fmt.Sprintf("files=%d,orgs_per_file=%d", shape.files, shape.perFile), func(b *testing.B) {
			dir := b.TempDir()
			write := func(path, content string) {
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					b.Fatal(err)
				}
			}
			write(filepath.Join(dir, "tokenwatch.yml"), "global: {schedule: \"@every 1m\"}\norg_files: [orgs.d/*.yml]\n")
			orgFile := func(f, gen int) string {
				var s strings.Builder
				for j := range shape.perFile {
					i := f*shape.perFile + j
					fmt.Fprintf(&s, `- name: org-%[1]d
  provider: generic
  token_url: https://idp%[1]d.example.com/token
  introspection_url: https://idp%[1]d.example.com/introspect
  userinfo_url: https://idp%[1]d.example.com/userinfo
  revocation_url: https://idp%[1]d.example.com/revoke
  client: {id: client-%[1]d, secret_file: secrets/org-%[1]d}
  grant: {type: client_credentials}
  labels: {team: t%[2]d, env: prod, generation: g%[3]d}
`, i, i%10, gen)
				}
				return s.String()
			}
			for f := range shape.files {
				write(filepath.Join(dir, "orgs.d", fmt.Sprintf("f%05d.yml", f)), orgFile(f, 0))
				for j := range shape.perFile {
					write(filepath.Join(dir, "orgs.d", "secrets", fmt.Sprintf("org-%d", f*shape.perFile+j)), "secret\n")
				}
			}
			changed := filepath.Join(dir, "orgs.d", "f00042.yml")
			gen := 0
			for b.Loop() {
				gen++
				b.StopTimer()
				write(changed, orgFile(42, gen))
				b.StartTimer()
				cfg, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(cfg.Orgs) != shape.files*shape.perFile {
					b.Fatalf("%d orgs", len(cfg.Orgs))
				}
			}
		})
	}
}
