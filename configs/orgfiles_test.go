package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// orgYAML is one valid org entry of an org file, named name, whose client
// secret is read from secretFile.
func orgYAML(name, secretFile string) string {
	return `- name: ` + name + `
  provider: generic
  token_url: https://idp.example.com/token
  client: {id: monitor, secret_file: ` + secretFile + `}
  grant: {type: client_credentials}
  probe: none
`
}

// mainOrgs is an orgs: section of the configuration file with one org.
func mainOrgs(name, secretFile string) string {
	return "orgs:\n  " + strings.ReplaceAll(strings.TrimSuffix(orgYAML(name, secretFile), "\n"), "\n", "\n  ") + "\n"
}

// orgDir writes files (path relative to a new directory: content) and
// returns the directory.
func orgDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), []byte(content))
	}
	return dir
}

func orgNamesOf(cfg *Config) []string {
	var out []string
	for _, o := range cfg.Orgs {
		out = append(out, o.Name)
	}
	return out
}

func TestOrgFilesLoad(t *testing.T) {
	dir := orgDir(t, map[string]string{
		"tokenwatch.yml":       "org_files: [orgs.d/*.yml, more/*/orgs.yml]\n" + mainOrgs("main", "secret"),
		"secret":               "main-secret\n",
		"orgs.d/a.yml":         orgYAML("a1", "secrets/a1"),
		"orgs.d/secrets/a1":    "a1-secret\n",
		"orgs.d/b.secret":      "b-secret\n",
		"orgs.d/notes.txt":     "not an org file",
		"orgs.d/.a.yml.swp":    "an editor's swap file",
		"orgs.d/empty.yml":     "# all orgs moved elsewhere\n",
		"more/x/orgs.yml":      orgYAML("x1", "../../secret"),
		"more/y/orgs.yml":      "[]\n",
		"more/y/unrelated.yml": "- not: matched\n",
		"more/z/README":        "a directory without an org file yet",
	})
	// b2 names its secret file by an absolute path.
	abs := filepath.Join(dir, "abs-secret")
	writeFile(t, abs, []byte("abs"))
	writeFile(t, filepath.Join(dir, "orgs.d/b.yml"), []byte(orgYAML("b1", "b.secret")+orgYAML("b2", abs)))

	cfg, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
	if err != nil {
		t.Fatalf("load:\n%v", err)
	}
	// orgs: first, then the files in the order of the patterns, each
	// pattern's matches in lexical order.
	if got, want := orgNamesOf(cfg), []string{"main", "a1", "b1", "b2", "x1"}; !slices.Equal(got, want) {
		t.Errorf("orgs = %q, want %q", got, want)
	}
	secrets := map[string]string{}
	for _, o := range cfg.Orgs {
		secrets[o.Name] = o.Client.Secret.Reveal()
	}
	// Relative secret files resolve against the org file's directory.
	for name, want := range map[string]string{"main": "main-secret", "a1": "a1-secret", "b1": "b-secret", "b2": "abs", "x1": "main-secret"} {
		if secrets[name] != want {
			t.Errorf("%s: client secret from the wrong file", name)
		}
	}
	wantPatterns := []string{filepath.Join(dir, "orgs.d/*.yml"), filepath.Join(dir, "more/*/orgs.yml")}
	if !slices.Equal(cfg.OrgFiles.Patterns, wantPatterns) {
		t.Errorf("patterns = %q, want %q", cfg.OrgFiles.Patterns, wantPatterns)
	}
	var files []string
	for _, f := range cfg.OrgFiles.Files {
		rel, _ := filepath.Rel(dir, f)
		files = append(files, rel)
	}
	if want := []string{"orgs.d/a.yml", "orgs.d/b.yml", "orgs.d/empty.yml", "more/x/orgs.yml", "more/y/orgs.yml"}; !slices.Equal(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
	// more/z holds no org file yet, but one written there must be seen.
	if got, want := cfg.OrgFiles.Dirs(), []string{filepath.Join(dir, "orgs.d"), filepath.Join(dir, "more"),
		filepath.Join(dir, "more/x"), filepath.Join(dir, "more/y"), filepath.Join(dir, "more/z")}; !slices.Equal(got, want) {
		t.Errorf("dirs = %q, want %q", got, want)
	}
}

// TestOrgFilesSkipTheConfigFile: a pattern that matches the configuration
// file itself does not read it as a list of orgs.
func TestOrgFilesSkipTheConfigFile(t *testing.T) {
	dir := orgDir(t, map[string]string{"tokenwatch.yml": "org_files: [\"*.yml\"]\n", "acme.yml": orgYAML("acme", "s"), "s": "secret"})
	cfg, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := orgNamesOf(cfg); !slices.Equal(got, []string{"acme"}) {
		t.Errorf("orgs %q, want acme", got)
	}
}

func TestOrgFilesAlone(t *testing.T) {
	t.Run("no orgs yet", func(t *testing.T) {
		// A directory filled later (by a deployment, a sidecar) is no error.
		dir := orgDir(t, map[string]string{"tokenwatch.yml": "org_files: [orgs.d/*.yml]\n"})
		cfg, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Orgs) != 0 || len(cfg.OrgFiles.Files) != 0 {
			t.Errorf("orgs %q, files %q; want none", orgNamesOf(cfg), cfg.OrgFiles.Files)
		}
	})
	t.Run("empty org_files still needs orgs", func(t *testing.T) {
		dir := orgDir(t, map[string]string{"tokenwatch.yml": "org_files: []\n"})
		_, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
		if err == nil || err.Error() != "orgs: at least one org is required (add a list entry under orgs:)" {
			t.Errorf("err = %v", err)
		}
	})
}

func TestOrgFilesProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name: "a bad file names itself and the field",
			files: map[string]string{
				"orgs.d/good.yml": orgYAML("good", "s"),
				"orgs.d/acme.yml": orgYAML("acme-1", "s") + orgYAML("acme-2", "s") +
					"- name: acme-3\n  provider: salesforce\n  url: https://acme.my.salesforce.com\n  client: {id: c, secret_file: s}\n" +
					"  grant: {type: password, username: u, password_file: missing/password}\n  colour: blue\n",
			},
			want: []string{
				"orgs.d/acme.yml: [2].colour: unknown key",
				"orgs.d/acme.yml: [2].grant.password_file: cannot read: no such file or directory",
			},
		},
		{
			name:  "duplicate across files",
			files: map[string]string{"orgs.d/a.yml": orgYAML("x", "s") + orgYAML("acme", "s"), "orgs.d/b.yml": orgYAML("acme", "s")},
			want:  []string{`orgs.d/b.yml: [0].name: duplicate name "acme" (first used by [1] of orgs.d/a.yml); names must be unique`},
		},
		{
			name:  "duplicate within a file",
			files: map[string]string{"orgs.d/a.yml": orgYAML("acme", "s") + orgYAML("acme", "s")},
			want:  []string{`orgs.d/a.yml: [1].name: duplicate name "acme" (first used by [0] of orgs.d/a.yml); names must be unique`},
		},
		{
			name:  "duplicate of orgs:",
			files: map[string]string{"tokenwatch.yml": "org_files: [orgs.d/*.yml]\n" + mainOrgs("main", "s"), "orgs.d/a.yml": orgYAML("main", "s")},
			want:  []string{`orgs.d/a.yml: [0].name: duplicate name "main" (first used by orgs[0] of the configuration file); names must be unique`},
		},
		{
			name:  "not a list",
			files: map[string]string{"orgs.d/a.yml": "name: acme\nprovider: generic\n"},
			want:  []string{`orgs.d/a.yml: must be a YAML list of orgs ("- name: ...", the entries of orgs:), got a mapping`},
		},
		{
			name:  "unparsable",
			files: map[string]string{"orgs.d/a.yml": "- name: [acme\n"},
			want:  []string{"orgs.d/a.yml: yaml: line 1: did not find expected ',' or ']'"},
		},
		{
			name:  "two documents",
			files: map[string]string{"orgs.d/a.yml": orgYAML("a", "s") + "---\n" + orgYAML("b", "s")},
			want:  []string{`orgs.d/a.yml: the file holds more than one YAML document (a second "---", line 7): keep one, everything after it would be ignored`},
		},
		{
			name:  "empty entry",
			files: map[string]string{"orgs.d/a.yml": orgYAML("a", "s") + "-\n"},
			want:  []string{"orgs.d/a.yml: [1]: empty org (remove the dash or fill it in)"},
		},
		{
			name:  "bad patterns",
			files: map[string]string{"tokenwatch.yml": "org_files: [\"orgs.d/[a-\", \"\", 3]\n"},
			want: []string{
				`org_files[0]: invalid glob: syntax error in pattern (use *, ? and [...] as in orgs.d/*.yml)`,
				"org_files[1]: empty pattern (a glob such as orgs.d/*.yml)",
				"org_files[2]: must be a string, got a number (quote the value)",
			},
		},
		{
			name:  "org_files not a list",
			files: map[string]string{"tokenwatch.yml": "org_files: orgs.d/*.yml\n"},
			want:  []string{"org_files: must be a list, got a string"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"tokenwatch.yml": "org_files: [orgs.d/*.yml]\n", "orgs.d/s": "secret", "s": "secret"}
			for k, v := range tc.files {
				files[k] = v
			}
			dir := orgDir(t, files)
			cfg, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("err = %v (cfg %v), want Problems", err, cfg != nil)
			}
			var got []string
			for _, p := range ps {
				got = append(got, strings.ReplaceAll(p.String(), dir, "{dir}"))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestOrgFilesNoSecretInErrors: an org file that is not YAML, or not a
// list, may be a secret mounted at the wrong path; no error quotes it.
func TestOrgFilesNoSecretInErrors(t *testing.T) {
	const secret = "s3cr3t-VALUE"
	for name, content := range map[string]string{
		"scalar":    secret + "\n",
		"bad yaml":  "- name: a\n  client: {id: x, secret: " + secret + "\n",
		"wrong key": "- name: a\n  clientsecret: " + secret + "\n",
		"number":    "- name: a\n  provider: generic\n  token_url: https://a.example/t\n  client: {id: x, secret: 12345}\n  grant: {type: client_credentials}\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := orgDir(t, map[string]string{"tokenwatch.yml": "org_files: [orgs.d/*]\n", "orgs.d/a": content})
			_, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
			if err == nil {
				t.Fatal("loaded")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "12345") {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
}

func TestOrgFilesWatchedFile(t *testing.T) {
	f := OrgFiles{Patterns: []string{"/etc/tw/orgs.d/*.yml"}, Files: []string{"/etc/tw/other/x.yaml"}}
	for path, want := range map[string]bool{
		"/etc/tw/orgs.d/acme.yml":    true,
		"/etc/tw/orgs.d/acme.yml~":   false,
		"/etc/tw/orgs.d/.acme.yml":   false,
		"/etc/tw/orgs.d/..data":      true, // a Kubernetes volume swapped its files
		"/etc/tw/orgs.d/..2026_x":    false,
		"/etc/tw/other/x.yaml":       true,
		"/etc/tw/orgs.d/sub/a.yml":   false,
		"/etc/tw/tokenwatch.yml":     false,
		"/etc/tw/orgs.d/notes.txt":   false,
		"/etc/tw/orgs.d/acme.yml.sw": false,
	} {
		if got := f.WatchedFile(path); got != want {
			t.Errorf("WatchedFile(%s) = %v, want %v", path, got, want)
		}
	}
}

// TestOrgFilesExample loads examples/org-files as a newcomer would: copied
// with its secret files next to it.
func TestOrgFilesExample(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("examples", "org-files")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		writeFile(t, filepath.Join(dir, rel), mustRead(t, path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"orgs.d/acme-prod/client-secret", "orgs.d/acme-prod/password", "orgs.d/globex/client-secret"} {
		writeFile(t, filepath.Join(dir, f), []byte("secret\n"))
	}
	cfg, err := Load(filepath.Join(dir, "tokenwatch.yml"), nil)
	if err != nil {
		t.Fatalf("example does not load:\n%v", err)
	}
	if got, want := orgNamesOf(cfg), []string{"acme-prod", "globex-prod", "globex-staging"}; !slices.Equal(got, want) {
		t.Errorf("orgs = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(src, "orgs.d", "acme-prod")); err == nil {
		t.Error("the example ships secret files")
	}
}
