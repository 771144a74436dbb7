package durability

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// healthyOrg starts a simulated org with one healthy password-grant
// connection and writes a config checking it as org "healthy" every second.
func healthyOrg(t *testing.T, dir string) (*orgsim.Org, string) {
	t.Helper()
	sim := orgsim.New(orgsim.Options{OrgID: "00D5e000000STOAAA"})
	sim.AddUser(orgsim.User{Username: "integration@store.example", Password: "pw", SecurityToken: "tok"})
	sim.AddApp(orgsim.App{ClientID: "store-app", ClientSecret: "store-secret", IntrospectAll: true})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	writeFile(t, filepath.Join(dir, "password"), "pwtok\n")
	config := filepath.Join(dir, "tokenwatch.yml")
	writeFile(t, config, fmt.Sprintf(`global:
  schedule: "@every 1s"
  timeout: 5s
orgs:
  - name: healthy
    url: %s
    client: {id: store-app, secret: store-secret}
    grant: {type: password, username: integration@store.example, password_file: password}
`, sim.URL()))
	return sim, config
}

func waitHealthy(t *testing.T, d *daemon) {
	t.Helper()
	e2etest.WaitFor(t, 20*time.Second, `tokenwatch_check_success{org="healthy"} 1`, func() bool {
		d.failIfExited("before the org's first healthy check")
		v, ok := sample(d.metrics(), `tokenwatch_check_success{org="healthy"}`)
		return ok && v == 1
	})
}

// TestCorruptStoreMovedAside starts tokenwatch on a storage file that is not
// a database: it must start anyway, move the file aside with a warning (the
// bytes kept for a post-mortem) and check as usual.
func TestCorruptStoreMovedAside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, config := healthyOrg(t, dir)
	storage := filepath.Join(dir, "data")
	if err := os.MkdirAll(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte("this is not a bbolt file \x00\xff\x13\x37 "), 2000)
	writeFile(t, filepath.Join(storage, "tokenwatch.db"), string(garbage))

	d := startDaemon(t, config, storage)
	d.waitReady(20 * time.Second)
	waitHealthy(t, d)
	if !strings.Contains(d.logs.String(), "moved aside") {
		t.Errorf("the log does not say the unreadable store was moved aside:\n%s", d.logs)
	}
	aside, _ := filepath.Glob(filepath.Join(storage, "tokenwatch.db.corrupt-*"))
	if len(aside) != 1 {
		entries, _ := os.ReadDir(storage)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("want one tokenwatch.db.corrupt-* in the storage folder, found %q among %q", aside, names)
	}
	if b, err := os.ReadFile(aside[0]); err != nil || !bytes.Equal(b, garbage) {
		t.Errorf("%s does not hold the corrupt file's bytes (err %v, %d bytes, want %d)", filepath.Base(aside[0]), err, len(b), len(garbage))
	}
	if b, err := os.ReadFile(filepath.Join(storage, "tokenwatch.db")); err != nil {
		t.Errorf("no fresh tokenwatch.db: %v", err)
	} else if bytes.Equal(b, garbage) {
		t.Errorf("tokenwatch.db still holds the garbage")
	}
	t.Logf("corrupt store moved aside to %s; the org checks healthy", filepath.Base(aside[0]))
}

// TestSecondInstanceRefused starts a second tokenwatch on the storage path
// of a running one: it must refuse at once (two writers would hand the same
// rotating refresh token to the server twice), and the first keeps running.
func TestSecondInstanceRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, config := healthyOrg(t, dir)
	storage := filepath.Join(dir, "data")
	first := startDaemon(t, config, storage)
	first.waitReady(20 * time.Second)
	waitHealthy(t, first)

	second := startDaemon(t, config, storage)
	if !second.waitExit(10 * time.Second) {
		t.Fatalf("a second tokenwatch on the same --storage.path still runs after 10s; its log:\n%s", second.logs)
	}
	if code := second.exitCode(); code != 1 {
		t.Errorf("the second tokenwatch ended with %s, want exit code 1", second.status())
	}
	if !strings.Contains(second.logs.String(), "is in use by another tokenwatch") {
		t.Errorf("the second tokenwatch's log does not say the storage is in use by another tokenwatch:\n%s", second.logs)
	}

	// The first keeps running and checking.
	before := checksTotal(first.metrics(), "healthy")
	e2etest.WaitFor(t, 10*time.Second, "the first tokenwatch to keep checking", func() bool {
		first.failIfExited("after the second one started")
		return checksTotal(first.metrics(), "healthy") > before
	})
	t.Logf("the second tokenwatch ended (%s); the first keeps checking", second.status())
}

// TestRestartShowsLastResult checks an org, kills tokenwatch with SIGKILL,
// makes the org's token endpoint hang, and restarts tokenwatch on the same
// --storage.path: until the new (hanging) check ends, the status API and the
// metrics show the last result from before the crash, marked as loaded.
func TestRestartShowsLastResult(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sim, config := healthyOrg(t, dir)
	storage := filepath.Join(dir, "data")
	d := startDaemon(t, config, storage)
	d.waitReady(20 * time.Second)
	waitHealthy(t, d)
	// Two more checks, so that a result certainly reached the store.
	before := checksTotal(d.metrics(), "healthy")
	e2etest.WaitFor(t, 20*time.Second, "two more checks", func() bool {
		return checksTotal(d.metrics(), "healthy") >= before+2
	})
	d.kill9()
	killed := time.Now()

	// The next check hangs in its token request for the whole timeout (5s).
	sim.SetFault(orgsim.EndpointToken, orgsim.Fault{Latency: time.Minute})
	restarted := time.Now()
	d = startDaemon(t, config, storage)
	d.waitReady(20 * time.Second)
	m := d.metrics()
	orgs := d.orgs()
	readAt := time.Now()

	o, ok := orgs["healthy"]
	switch {
	case !ok:
		t.Errorf("/api/v1/orgs does not list the org")
	case o.Last == nil:
		t.Errorf("/api/v1/orgs has no last result for the org right after the restart (state %q)", o.State)
	default:
		if !o.loaded() {
			t.Errorf(`/api/v1/orgs does not mark the org's result "loaded": true right after the restart (state %q, last check at %s)`,
				o.State, o.Last.Start.Format(time.RFC3339Nano))
		}
		if o.Last.Outcome != "ok" || o.State != "ok" {
			t.Errorf("/api/v1/orgs shows state %q, outcome %q; want the last result from before the crash, ok", o.State, o.Last.Outcome)
		}
		if o.Last.Start.After(killed) {
			t.Errorf("the result shown started at %s, after the crash at %s: not the stored one", o.Last.Start, killed)
		}
	}
	exp, ok := sample(m, `tokenwatch_token_expiry_timestamp_seconds{org="healthy"}`)
	if !ok {
		t.Errorf("/metrics lacks tokenwatch_token_expiry_timestamp_seconds{org=\"healthy\"} right after the restart")
	} else if until := time.Until(time.Unix(int64(exp), 0)); until < time.Hour {
		t.Errorf("the loaded token expiry is %s away, want the session's ~2h", until.Round(time.Second))
	}
	if v, ok := sample(m, `tokenwatch_check_success{org="healthy"}`); !ok || v != 1 {
		t.Errorf("/metrics right after the restart: tokenwatch_check_success{org=\"healthy\"} = %v (present %v), want the stored 1", v, ok)
	}
	t.Logf("state read %s after the restart (the first new check hangs for 5s)", readAt.Sub(restarted).Round(time.Millisecond))
	if readAt.Sub(restarted) > 4*time.Second {
		t.Errorf("the state was read %s after the restart: too late to be sure no new check had ended", readAt.Sub(restarted).Round(time.Millisecond))
	}
	if t.Failed() {
		t.Logf("tokenwatch log after the restart:\n%s", d.logs)
	}
}
