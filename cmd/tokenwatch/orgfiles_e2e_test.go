package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// BenchmarkOrgFilesReload measures, with the real binary, how long one
// changed org file among 10,000 orgs (100 files of 100) takes from being
// written to its new labels in /metrics: debouncing, loading every file,
// applying the configuration, a scrape. The orgs point at a closed port,
// checked once an hour.
//
//	go test -run='^$' -bench=OrgFilesReload -benchtime=5x ./cmd/tokenwatch/
//
// On the project's 2-core machine, shared with other builds, 2026-11-30:
// 3.3 s/op at load average 8. The same measured by hand (a script writing
// the file and polling /metrics): 2.0 to 3.5 s at load average 3, 5.3 to
// 11.9 s at 18; the daemon's log gives load_duration and duration of each
// reload. docs/configuration.md has the figures with those of
// BenchmarkReloadOrgFiles in configs/.
func BenchmarkOrgFilesReload(b *testing.B) {
	const files, perFile = 100, 100
	dir := b.TempDir()
	write := func(name, content string) {
		path := filepath.Join(dir, name)
		tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
	}
	orgFile := func(f, generation int) string {
		var s strings.Builder
		for j := range perFile {
			i := f*perFile + j
			fmt.Fprintf(&s, "- name: org-%d\n  provider: generic\n  token_url: http://127.0.0.1:9/token%d\n"+
				"  client: {id: client-%d, secret_file: ../secret}\n  grant: {type: client_credentials}\n  probe: none\n"+
				"  labels: {team: t%d, generation: g%d}\n", i, i, i, i%10, generation)
		}
		return s.String()
	}
	if err := os.MkdirAll(filepath.Join(dir, "orgs.d"), 0o700); err != nil {
		b.Fatal(err)
	}
	write("secret", "secret\n")
	write("tokenwatch.yml", "global: {schedule: \"@every 1h\", timeout: 1s}\norg_files: [orgs.d/*.yml]\n")
	for f := range files {
		write(fmt.Sprintf("orgs.d/f%03d.yml", f), orgFile(f, 0))
	}
	addr := e2etest.FreeAddr(b)
	logs := &e2etest.Buffer{}
	cmd := exec.Command(e2etest.Tokenwatch(b), "--config.file="+filepath.Join(dir, "tokenwatch.yml"),
		"--web.listen-address="+addr, "--storage.path="+b.TempDir())
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	metrics := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	e2etest.WaitFor(b, 2*time.Minute, "10,000 orgs loaded", func() bool {
		return strings.Contains(metrics(), `org="org-9999"`)
	})
	// Let the first checks (all refused at once) settle.
	time.Sleep(10 * time.Second)

	generation := 0
	for b.Loop() {
		generation++
		write("orgs.d/f042.yml", orgFile(42, generation))
		want := fmt.Sprintf(`generation="g%d"`, generation)
		if !e2etest.Poll(time.Minute, func() bool { return strings.Contains(metrics(), want) }) {
			b.Fatalf("the change was not picked up within a minute; log:\n%s", logs)
		}
	}
}

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
