package configs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

type exampleCase struct {
	file   string
	env    []string
	files  map[string][]byte // path relative to the example -> content
	grants []string          // grant type of each org, in order
}

func exampleCases(t *testing.T) []exampleCase {
	rsaKey := mustRead(t, filepath.Join("testdata", "rsa-pkcs8.key"))
	return []exampleCase{
		{
			file: "salesforce-password.yml",
			files: map[string][]byte{
				"secrets/acme-client-secret": []byte("consumer-secret\n"),
				"secrets/acme-password":      []byte("mypasswordXXXXXXXXXX\n"),
			},
			grants: []string{"password"},
		},
		{
			file:   "salesforce-jwt.yml",
			env:    []string{"ACME_CLIENT_SECRET=consumer-secret"},
			files:  map[string][]byte{"keys/acme-jwt.key": rsaKey},
			grants: []string{"jwt_bearer"},
		},
		{
			file:   "salesforce-client-credentials.yml",
			env:    []string{"ACME_CLIENT_SECRET=consumer-secret"},
			grants: []string{"client_credentials"},
		},
		{
			file: "salesforce-refresh-token.yml",
			files: map[string][]byte{
				"secrets/acme-client-secret": []byte("consumer-secret\n"),
				"secrets/acme-refresh-token": []byte("5Aep861refresh\n"),
			},
			grants: []string{"refresh_token"},
		},
		{
			file:   "generic-client-credentials.yml",
			env:    []string{"IDP_CLIENT_SECRET=client-secret", "IDP_INTROSPECTOR_SECRET=introspector-secret"},
			grants: []string{"client_credentials", "client_credentials"},
		},
	}
}

// TestExamples loads every file under examples/ as a newcomer would use it:
// copied next to its secret and key files, with its variables set.
func TestExamples(t *testing.T) {
	for _, tc := range exampleCases(t) {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			writeFile(t, path, mustRead(t, filepath.Join("examples", tc.file)))
			for name, content := range tc.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			cfg, err := Load(path, tc.env)
			if err != nil {
				t.Fatalf("example does not load:\n%v", err)
			}
			var grants []string
			for _, o := range cfg.Orgs {
				grants = append(grants, o.Grant.Type)
			}
			if !slices.Equal(grants, tc.grants) {
				t.Errorf("grant types = %v, want %v", grants, tc.grants)
			}
		})
	}
}

func TestEveryExampleIsTested(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range exampleCases(t) {
		tested[tc.file] = true
	}
	for _, f := range files {
		if !tested[filepath.Base(f)] {
			t.Errorf("%s is not loaded by TestExamples", f)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
}
