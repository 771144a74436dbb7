package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// orgInfoLabels are the labels of every tokenwatch_org_info series, by org.
func orgInfoLabels(metrics string) map[string]string {
	out := map[string]string{}
	re := regexp.MustCompile(`org="([^"]+)"`)
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, "tokenwatch_org_info{"); ok {
			if m := re.FindStringSubmatch(rest); m != nil {
				out[m[1]] = rest
			}
		}
	}
	return out
}

// TestOrgFilesReloadWithoutSignal runs the daemon with its orgs in
// org_files and changes the files under it: each change is picked up with
// no signal and no /-/reload, a bad file is refused with its path and field
// while the running orgs stay, and a Kubernetes volume's ..data swap counts
// as a change.
func TestOrgFilesReloadWithoutSignal(t *testing.T) {
	f := newFixture(t)
	write := func(name, content string) {
		t.Helper()
		path := filepath.Join(f.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		// As editors and deployment tools do: a new file renamed over the old.
		tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	org := func(name, team string) string {
		// secret_file is relative to the org file's directory.
		return fmt.Sprintf("- name: %s\n  url: %s\n  client: {id: all-app, secret_file: ../client-secret}\n"+
			"  grant: {type: client_credentials}\n  labels: {team: %s}\n", name, f.org.URL(), team)
	}
	write("client-secret", canaryIntroSecret+"\n")
	write("tokenwatch.yml", "global: {schedule: \"@every 1m\"}\norg_files: [orgs.d/*.yml, k8s/*.yml]\n")
	write("orgs.d/a.yml", org("file-a", "one"))
	// A Kubernetes volume: the files are links into ..data, a link to the
	// current version's directory, swapped in one rename.
	k8sVersion := func(v int, content string) {
		t.Helper()
		dir := fmt.Sprintf("..v%d", v)
		write(filepath.Join("k8s", dir, "org.yml"), content)
		tmp := filepath.Join(f.dir, "k8s", "..data_tmp")
		if err := os.Symlink(dir, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(f.dir, "k8s", "..data")); err != nil {
			t.Fatal(err)
		}
	}
	k8sVersion(1, org("k8s-org", "one"))
	if err := os.Symlink(filepath.Join("..data", "org.yml"), filepath.Join(f.dir, "k8s", "org.yml")); err != nil {
		t.Fatal(err)
	}

	d := startDaemon(t, f)
	want := func(what string, cond func(orgs map[string]string, metrics string) bool) {
		t.Helper()
		var metrics string
		ok := e2etest.Poll(15*time.Second, func() bool {
			_, metrics = d.get(t, "/metrics")
			return cond(orgInfoLabels(metrics), metrics)
		})
		if !ok {
			t.Fatalf("%s: not seen within 15 s; orgs %q\nlogs:\n%s", what, orgInfoLabels(metrics), d.logs)
		}
	}
	names := func(orgs map[string]string) []string {
		var out []string
		for name := range orgs {
			out = append(out, name)
		}
		slices.Sort(out)
		return out
	}
	want("the orgs of both files", func(orgs map[string]string, _ string) bool {
		return slices.Equal(names(orgs), []string{"file-a", "k8s-org"})
	})

	write("orgs.d/b.yml", org("file-b", "two"))
	want("an added file", func(orgs map[string]string, _ string) bool {
		return slices.Equal(names(orgs), []string{"file-a", "file-b", "k8s-org"})
	})

	write("orgs.d/a.yml", org("file-a", "changed"))
	want("a changed file", func(orgs map[string]string, _ string) bool {
		return strings.Contains(orgs["file-a"], `team="changed"`)
	})

	k8sVersion(2, org("k8s-org", "swapped"))
	want("a swapped Kubernetes volume", func(orgs map[string]string, _ string) bool {
		return strings.Contains(orgs["k8s-org"], `team="swapped"`)
	})

	// A bad file refuses the reload; what runs stays.
	write("orgs.d/c.yml", "- name: file-c\n  url: "+f.org.URL()+"\n  client: {id: all-app, secret_file: ../client-secret}\n"+
		"  grant: {type: password, username: u, password_file: nope}\n"+
		"- name: file-a\n  url: "+f.org.URL()+"\n  client: {id: all-app, secret: "+canaryClientSecret+"}\n  grant: {type: client_credentials}\n")
	want("a bad file refused", func(_ map[string]string, metrics string) bool {
		v, ok := sample(metrics, "tokenwatch_config_last_reload_successful")
		return ok && v == 0
	})
	_, metrics := d.get(t, "/metrics")
	if got := names(orgInfoLabels(metrics)); !slices.Equal(got, []string{"file-a", "file-b", "k8s-org"}) {
		t.Errorf("after a refused reload the orgs are %q, want the running ones", got)
	}
	logs := d.logs.String()
	for _, want := range []string{
		`file=orgs.d/c.yml field=[0].grant.password_file problem="cannot read`,
		`file=orgs.d/c.yml field=[1].name problem="duplicate name \"file-a\" (first used by [0] of orgs.d/a.yml); names must be unique"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not name the bad file and field: want %s in\n%s", want, logs)
		}
	}

	if err := os.Remove(filepath.Join(f.dir, "orgs.d/c.yml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.dir, "orgs.d/b.yml")); err != nil {
		t.Fatal(err)
	}
	want("removed files", func(orgs map[string]string, metrics string) bool {
		v, ok := sample(metrics, "tokenwatch_config_last_reload_successful")
		return ok && v == 1 && slices.Equal(names(orgs), []string{"file-a", "k8s-org"})
	})
	if !strings.Contains(d.logs.String(), "trigger=org_files") {
		t.Errorf("no reload logged with trigger=org_files:\n%s", d.logs)
	}
	d.stop(t)
	f.assertNoSecrets(t, "the daemon's log", d.logs.String())
}

// TestCheckConfigOrgFiles: check-config validates the org files too and
// names the file of each problem.
func TestCheckConfigOrgFiles(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(f.config, []byte("org_files: [orgs.d/*.yml]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "orgs.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	bad := "- name: acme\n  url: " + f.org.URL() + "\n  client: {id: x, secret: " + canaryClientSecret + "}\n  grant: {type: password, username: u, password_file: missing}\n"
	if err := os.WriteFile(filepath.Join(f.dir, "orgs.d", "acme.yml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCommand(t, f, "check-config", "--config.file="+f.config)
	if code != 1 || !strings.Contains(errOut, "orgs.d/acme.yml: [0].grant.password_file: cannot read") {
		t.Errorf("check-config: exit %d, want 1 naming orgs.d/acme.yml: [0].grant.password_file:\n%s%s", code, out, errOut)
	}
	f.assertNoSecrets(t, "check-config output", out+errOut)
}
