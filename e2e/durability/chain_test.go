package durability

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// TestRefreshChainSurvivesKill9 kills tokenwatch with SIGKILL twenty times
// at random moments (a refresh takes 100-300 ms of the 1 s period, so some
// kills land in the middle of one, before or after the server rotated),
// while it checks a refresh-token org against a server with strict rotation
// (see rotator), and restarts it on the same --storage.path each time. The
// chain must never break: the server never sees a refresh token tokenwatch
// had already replaced, and a last run still ends with a healthy check.
func TestRefreshChainSurvivesKill9(t *testing.T) {
	t.Parallel()
	const restarts = 20
	const org = "rotating"
	rng := newRand(t)
	srv := newRotator(t, rng, 100*time.Millisecond, 300*time.Millisecond)
	dir := t.TempDir()
	storage := filepath.Join(dir, "data")
	writeFile(t, filepath.Join(dir, "refresh"), srv.seed+"\n")
	config := filepath.Join(dir, "tokenwatch.yml")
	writeFile(t, config, `global:
  schedule: "@every 1s"
  timeout: 3s
orgs:
`+srv.orgConfig(org, "refresh"))

	survived := 0
	for i := 1; i <= restarts; i++ {
		d := startDaemon(t, config, storage)
		wait := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2200*time.Millisecond)))
		time.Sleep(wait) // the experiment: a random moment to crash
		d.failIfExited(fmt.Sprintf("in run %d of %d, %s after its start", i, restarts, wait))
		d.kill9()
		if why := srv.killedReason(); why != "" {
			t.Fatalf("the refresh token chain broke after %d restarts survived (run %d killed %s after its start): %s\nlog of the last run:\n%s",
				survived, i, wait, srv.report(), d.logs)
		}
		survived++
	}
	t.Logf("%d SIGKILL restarts survived: %s", survived, srv.report())

	// One more run, until one more check has finished.
	rotationsBefore := srv.rotations()
	started := time.Now()
	d := startDaemon(t, config, storage)
	d.waitReady(20 * time.Second)
	var last apiOrg
	e2etest.WaitFor(t, 30*time.Second, "a check of the last run to finish", func() bool {
		d.failIfExited("in the last run")
		o, ok := d.orgs()[org]
		if !ok || o.Last == nil || o.Last.Start.Before(started) || o.loaded() {
			return false
		}
		last = o
		return true
	})
	if why := srv.killedReason(); why != "" {
		t.Fatalf("the refresh token chain broke in the last run: %s\nlog:\n%s", srv.report(), d.logs)
	}
	if last.Last.Outcome != "ok" {
		t.Fatalf("the last run's check has outcome %q, want ok (%s)\nlog:\n%s", last.Last.Outcome, srv.report(), d.logs)
	}
	e2etest.WaitFor(t, 10*time.Second, `tokenwatch_check_success{org="`+org+`"} 1 in /metrics`, func() bool {
		v, ok := sample(d.metrics(), `tokenwatch_check_success{org="`+org+`"}`)
		return ok && v == 1
	})
	if srv.rotations() <= rotationsBefore {
		t.Errorf("the last run's healthy check did not refresh (rotations %d before, %d after)", rotationsBefore, srv.rotations())
	}
	t.Logf("after %d SIGKILL restarts, the last run's check is ok: %s", survived, srv.report())
}
