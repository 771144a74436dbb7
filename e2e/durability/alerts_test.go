package durability

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// TestAlertStateSurvivesKill9 fires two alerts through a real Alertmanager,
// kills tokenwatch with SIGKILL, heals one org's server while tokenwatch is
// down, and restarts it on the same --storage.path. The alert of the org
// still failing keeps its startsAt (no new incident, no second page), and
// the alert of the healed org is resolved at its first good check instead of
// lingering at Alertmanager until its endsAt.
func TestAlertStateSurvivesKill9(t *testing.T) {
	t.Parallel()
	const (
		failing    = "still-failing"
		recovering = "recovering"
		// endsAt is four resend intervals ahead: 40s, far beyond the waits below.
		resendInterval = 10 * time.Second
	)
	amBin := e2etest.Tool(t, "alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()
	storage := filepath.Join(dir, "data")

	// Both apps lack "Introspect All Tokens": their password-grant tokens work
	// but introspect as inactive (introspection_not_permitted).
	sim := orgsim.New(orgsim.Options{OrgID: "00D5e000000DURAAA"})
	sim.AddUser(orgsim.User{Username: "integration@durable.example", Password: "pw", SecurityToken: "tok"})
	sim.AddApp(orgsim.App{ClientID: "app-failing", ClientSecret: "secret-failing"})
	sim.AddApp(orgsim.App{ClientID: "app-recovering", ClientSecret: "secret-recovering"})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)

	viaAM := newReceiver(t, "Alertmanager's webhook receiver")
	direct := newReceiver(t, "tokenwatch's own webhook")
	am := startAlertmanager(t, amBin, dir, viaAM.srv.URL+"/am")
	toAM := newAMRecorder(t, am.addr)

	writeFile(t, filepath.Join(dir, "password"), "pwtok\n")
	config := filepath.Join(dir, "tokenwatch.yml")
	writeFile(t, config, fmt.Sprintf(`global:
  schedule: "@every 1s"
  timeout: 3s
orgs:
  - name: %[1]s
    url: %[3]s
    client: {id: app-failing, secret: secret-failing}
    grant: {type: password, username: integration@durable.example, password_file: password}
  - name: %[2]s
    url: %[3]s
    client: {id: app-recovering, secret: secret-recovering}
    grant: {type: password, username: integration@durable.example, password_file: password}
alerting:
  failure_threshold: 1
  success_threshold: 1
  resend_interval: %[4]s
  alertmanagers:
    - url: %[5]s
      timeout: 2s
  webhooks:
    - url: %[6]s/direct
      timeout: 2s
`, failing, recovering, sim.URL(), resendInterval, toAM.srv.URL, direct.srv.URL))

	began := time.Now()
	d := startDaemon(t, config, storage)
	defer func() {
		if t.Failed() {
			t.Logf("received through Alertmanager:\n%s\nreceived directly:\n%s\nlog of tokenwatch's last run:\n%s",
				viaAM.all(), direct.all(), d.logs)
		}
	}()
	d.waitReady(20 * time.Second)
	firing := map[string]received{}
	for _, org := range []string{failing, recovering} {
		firing[org] = viaAM.wait(t, 30*time.Second, org+"'s alert firing", began, isAlert(org, "firing"))
	}
	sentFirst := toAM.since(began, failing)
	if len(sentFirst) == 0 {
		t.Fatalf("Alertmanager's receiver got %s's alert, but the recorder saw tokenwatch send none", failing)
	}
	origStartsAt := sentFirst[0].startsAt
	if got := firing[failing].alert.StartsAt; !sameInstant(got, origStartsAt) {
		t.Logf("note: startsAt at Alertmanager's receiver %s, sent by tokenwatch %s", got.Format(time.RFC3339Nano), origStartsAt.Format(time.RFC3339Nano))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	held, err := am.alerts(ctx, recovering)
	if err != nil || len(held) != 1 {
		t.Fatalf("Alertmanager's alerts of %s: %v %+v", recovering, err, held)
	}
	recoveringEndsAt := held[0].EndsAt
	t.Logf("both alerts firing at Alertmanager's receiver: %s startsAt %s; %s endsAt at Alertmanager %s",
		failing, origStartsAt.Format(time.RFC3339Nano), recovering, recoveringEndsAt.Format(time.RFC3339Nano))

	// Let two more checks of each org pass, so that the alert state had
	// time to reach the store, then crash, heal one org while tokenwatch is
	// down, and restart.
	m := d.metrics()
	before := map[string]float64{failing: checksTotal(m, failing), recovering: checksTotal(m, recovering)}
	e2etest.WaitFor(t, 20*time.Second, "two more checks of each org", func() bool {
		m := d.metrics()
		return checksTotal(m, failing) >= before[failing]+2 && checksTotal(m, recovering) >= before[recovering]+2
	})
	d.kill9()
	sim.SetIntrospectAll("app-recovering", true)
	restarted := time.Now()
	d = startDaemon(t, config, storage)
	d.waitReady(20 * time.Second)

	// The failing org's alert is sent to Alertmanager again at start, with
	// its original startsAt: the same incident continues.
	var resent postedAlert
	e2etest.WaitFor(t, 10*time.Second, "tokenwatch to send "+failing+"'s alert to Alertmanager after the restart", func() bool {
		posted := toAM.since(restarted, failing)
		if len(posted) > 0 {
			resent = posted[0]
		}
		return len(posted) > 0
	})
	if !sameInstant(resent.startsAt, origStartsAt) {
		t.Errorf("after the restart tokenwatch sends %s's alert to Alertmanager with startsAt %s, want the original %s (a new incident instead of the same one)",
			failing, resent.startsAt.Format(time.RFC3339Nano), origStartsAt.Format(time.RFC3339Nano))
	}
	if !resent.endsAt.After(time.Now()) {
		t.Errorf("after the restart tokenwatch sends %s's alert with endsAt %s: resolved, although the org still fails", failing, resent.endsAt.Format(time.RFC3339Nano))
	}
	t.Logf("%s's alert sent to Alertmanager %s after the restart with startsAt %s",
		failing, resent.at.Sub(restarted).Round(time.Millisecond), resent.startsAt.Format(time.RFC3339Nano))

	// The healed org's alert is resolved at its first good check: within
	// seconds, long before Alertmanager would let it expire at endsAt.
	deadline := 15 * time.Second
	if until := time.Until(recoveringEndsAt) - 10*time.Second; until < deadline {
		deadline = until
	}
	resolved := viaAM.wait(t, deadline, recovering+"'s alert resolved after the restart (Alertmanager alone would expire it at "+
		recoveringEndsAt.Format(time.RFC3339)+")", restarted, isAlert(recovering, "resolved"))
	direct.wait(t, 10*time.Second, recovering+"'s alert resolved after the restart", restarted, isAlert(recovering, "resolved"))
	t.Logf("%s resolved at Alertmanager's receiver %s after the restart, %s before its endsAt",
		recovering, resolved.at.Sub(restarted).Round(time.Millisecond), recoveringEndsAt.Sub(resolved.at).Round(time.Second))

	for _, p := range toAM.since(restarted, failing) {
		if !sameInstant(p.startsAt, origStartsAt) {
			t.Errorf("at %s tokenwatch sent %s's alert to Alertmanager with startsAt %s, want the original %s",
				p.at.Format(time.RFC3339Nano), failing, p.startsAt.Format(time.RFC3339Nano), origStartsAt.Format(time.RFC3339Nano))
			break
		}
	}
	// Webhooks get no re-sends, but whatever reaches the direct one after
	// the restart must be the same alert.
	if r, ok := direct.find(restarted, isAlert(failing, "firing")); ok && !sameInstant(r.alert.StartsAt, origStartsAt) {
		t.Errorf("after the restart the direct webhook got %s's alert with startsAt %s, want the original %s (a second page)",
			failing, r.alert.StartsAt.Format(time.RFC3339Nano), origStartsAt.Format(time.RFC3339Nano))
	}
	held, err = am.alerts(ctx, failing)
	switch {
	case err != nil:
		t.Errorf("Alertmanager's alerts of %s: %v", failing, err)
	case len(held) != 1 || held[0].Status.State != "active":
		t.Errorf("Alertmanager holds %+v for %s, want one active alert", held, failing)
	case !sameInstant(held[0].StartsAt, origStartsAt):
		t.Errorf("Alertmanager shows %s's alert with startsAt %s, want the original %s", failing, held[0].StartsAt, origStartsAt)
	}
	if r, ok := viaAM.find(began, isAlert(failing, "resolved")); ok {
		t.Errorf("%s's alert was resolved at %s although the org never recovered", failing, r.at.Format(time.RFC3339Nano))
	}
	if r, ok := direct.find(began, isAlert(failing, "resolved")); ok {
		t.Errorf("%s's alert was resolved at the direct webhook at %s although the org never recovered", failing, r.at.Format(time.RFC3339Nano))
	}
}

// sameInstant compares two startsAt values at the millisecond, the
// precision Alertmanager keeps.
func sameInstant(a, b time.Time) bool {
	return a.Sub(b).Abs() < time.Millisecond
}
