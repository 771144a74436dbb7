package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
	"github.com/tokenwatch/tokenwatch/internal/fakeclock"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// sender records messages; with accept set it accepts every firing one at once.
type sender struct {
	mu     sync.Mutex
	msgs   []alerting.Message
	accept bool
}

func (s *sender) Send(msgs ...alerting.Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, msgs...)
	accept := s.accept
	s.mu.Unlock()
	if accept {
		// Acceptance arrives from a delivery goroutine, as it does from the Router.
		go func() {
			for _, m := range msgs {
				if m.Accepted != nil {
					m.Accepted("test")
				}
			}
		}()
	}
}

func (s *sender) SendTo(_ []string, msgs ...alerting.Message) { s.Send(msgs...) }

// take returns and forgets the messages so far, as "status alertname reason" (+ " resend").
func (s *sender) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		line := m.Alert.Status + " " + m.Alert.Labels["alertname"] + " " + m.Alert.Labels["reason"]
		if m.Resend {
			line += " resend"
		}
		out = append(out, line)
	}
	s.msgs = nil
	return out
}

func (s *sender) last() alerting.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return alerting.Message{}
	}
	return s.msgs[len(s.msgs)-1]
}

type alertHarness struct {
	t     *testing.T
	a     *alerter
	s     *sender
	clock *fakeclock.Clock
	logs  *bytes.Buffer
}

func newAlertHarness(t *testing.T, cfg configs.Alerting, orgs ...configs.Org) *alertHarness {
	t.Helper()
	h := &alertHarness{t: t, s: &sender{}, clock: fakeclock.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)), logs: &bytes.Buffer{}}
	h.a = newAlerter(slog.New(slog.NewTextHandler(h.logs, nil)), h.s, h.clock.Now, nil)
	if cfg.FailureThreshold == 0 {
		cfg.FailureThreshold = 2
	}
	if cfg.SuccessThreshold == 0 {
		cfg.SuccessThreshold = 1
	}
	if cfg.ResendInterval == 0 {
		cfg.ResendInterval = time.Minute
	}
	h.a.configure(cfg)
	if len(orgs) == 0 {
		orgs = []configs.Org{{Target: checks.Target{Name: "acme", TokenMode: "fresh", Labels: map[string]string{"team": "crm"}}}}
	}
	h.setOrgs(orgs...)
	return h
}

func (h *alertHarness) setOrgs(orgs ...configs.Org) {
	infos := map[string]checks.Info{}
	for _, o := range orgs {
		infos[o.Name] = checks.Info{Name: o.Name, Provider: "salesforce", Grant: "password", Labels: o.Labels}
	}
	h.a.setOrgs(orgs, infos)
}

// check feeds one result to org acme, a minute after the previous one.
func (h *alertHarness) check(res *checks.Result) {
	h.clock.Advance(time.Minute)
	res.Start = h.clock.Now().Add(-time.Second)
	h.a.observe("acme", res)
}

func (h *alertHarness) expect(want ...string) {
	h.t.Helper()
	if got := h.s.take(); !slices.Equal(got, want) {
		h.t.Fatalf("messages = %q, want %q", got, want)
	}
}

func (h *alertHarness) state(alertname string) string {
	for _, s := range h.a.statuses() {
		if s.Org == "acme" && s.Alertname == alertname {
			return s.State
		}
	}
	return "none"
}

func boolPtr(b bool) *bool { return &b }

func step(s checks.Step, o checks.Outcome) checks.StepResult {
	return checks.StepResult{Step: s, Outcome: o, Status: 200}
}

// Results of the shapes checks produces.
func healthy() *checks.Result {
	return &checks.Result{Outcome: checks.OutcomeOK, Explanation: "Token obtained, introspection active.",
		Token: checks.TokenFacts{Active: boolPtr(true), Expiry: time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC), ExpirySource: "introspection"},
		Steps: []checks.StepResult{step(checks.StepToken, "ok"), step(checks.StepIntrospect, "ok"), step(checks.StepProbe, "ok"), step(checks.StepRevoke, "ok")}}
}

func inactive(o checks.Outcome) *checks.Result {
	return &checks.Result{Outcome: o,
		Explanation: `Introspection at http://127.0.0.1/services/oauth2/introspect answered {"active": false}, yet the resource call succeeded.`,
		Fix:         `Enable "Introspect All Tokens" on the connected app that introspects.`,
		Token:       checks.TokenFacts{Active: boolPtr(false)},
		Steps:       []checks.StepResult{step(checks.StepToken, "ok"), step(checks.StepIntrospect, "ok"), step(checks.StepProbe, "ok"), step(checks.StepRevoke, "ok")}}
}

func tokenFailure(o checks.Outcome) *checks.Result {
	return &checks.Result{Outcome: o, Explanation: "The token endpoint said no.", Fix: "Check the client.",
		Steps: []checks.StepResult{step(checks.StepToken, o)}}
}

func TestAlertFiresAfterFailureThresholdAndResolves(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 2, SuccessThreshold: 1, ResendInterval: time.Minute})
	h.check(healthy())
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.expect()
	if st := h.state(AlertIntrospectionInactive); st != AlertPending {
		t.Errorf("after one bad check: %s, want pending", st)
	}
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	firedAt := h.clock.Now()
	m := h.s.last()
	h.expect("firing TokenIntrospectionInactive introspection_not_permitted")
	if st := h.state(AlertIntrospectionInactive); st != AlertSending {
		t.Errorf("before any destination accepted: %s, want sending (not firing)", st)
	}
	m.Accepted("alertmanager/127.0.0.1:9093")
	if st := h.state(AlertIntrospectionInactive); st != AlertFiring {
		t.Errorf("after a destination accepted: %s, want firing", st)
	}
	want := map[string]string{
		"alertname": "TokenIntrospectionInactive", "org": "acme", "reason": "introspection_not_permitted",
		"severity": "critical", "team": "crm",
	}
	if !mapsEqual(m.Alert.Labels, want) {
		t.Errorf("labels = %v, want %v", m.Alert.Labels, want)
	}
	if !m.Alert.StartsAt.Equal(firedAt) || !m.Alert.EndsAt.Equal(firedAt.Add(4*time.Minute)) {
		t.Errorf("startsAt %s endsAt %s, want %s and 4 resend intervals later", m.Alert.StartsAt, m.Alert.EndsAt, firedAt)
	}
	ann := m.Alert.Annotations
	if !strings.Contains(ann["fix"], "Introspect All Tokens") ||
		!strings.Contains(ann["summary"], "org acme is inactive (introspection_not_permitted)") ||
		!strings.Contains(ann["description"], "2 consecutive bad checks of org acme since 2026-11-26T12:01:59Z (alerting after 2)") ||
		!strings.Contains(ann["description"], `answered {"active": false}`) {
		t.Errorf("annotations = %q", ann)
	}

	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.expect() // still firing: no new notification, the next re-send carries it
	h.check(healthy())
	h.expect("resolved TokenIntrospectionInactive introspection_not_permitted")
	if st := h.state(AlertIntrospectionInactive); st != "none" {
		t.Errorf("after resolving: %s", st)
	}
	if !strings.Contains(h.logs.String(), "alert firing") || !strings.Contains(h.logs.String(), "alert resolved") {
		t.Errorf("logs lack the state changes:\n%s", h.logs)
	}

	// success_threshold 2: one good check is not enough.
	h = newAlertHarness(t, configs.Alerting{FailureThreshold: 1, SuccessThreshold: 2})
	h.check(inactive(checks.OutcomeTokenInactive))
	h.check(healthy())
	h.expect("firing TokenIntrospectionInactive token_inactive")
	h.check(healthy())
	h.expect("resolved TokenIntrospectionInactive token_inactive")
}

func TestResolvedAlertEndsNow(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
	h.check(inactive(checks.OutcomeTokenInactive))
	h.check(healthy())
	m := h.s.last()
	if m.Alert.Status != alerting.StatusResolved || !m.Alert.EndsAt.Equal(h.clock.Now()) {
		t.Errorf("resolve: status %s endsAt %s, want resolved at %s", m.Alert.Status, m.Alert.EndsAt, h.clock.Now())
	}
	if m.Alert.StartsAt.IsZero() || m.Alert.Fingerprint != alerting.Fingerprint(m.Alert.Labels) {
		t.Errorf("resolve lacks the firing alert's identity: %+v", m.Alert)
	}
}

// The headline alert fires for an org that is inactive from its very first
// checks, and for one whose active token turns inactive.
func TestIntrospectionInactiveFromTheStartAndAfterActive(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{})
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.expect("firing TokenIntrospectionInactive introspection_not_permitted")

	h = newAlertHarness(t, configs.Alerting{})
	for range 3 {
		h.check(healthy())
	}
	h.check(inactive(checks.OutcomeTokenInactive))
	h.check(inactive(checks.OutcomeTokenInactive))
	h.expect("firing TokenIntrospectionInactive token_inactive")
}

func TestFlappingAndHysteresis(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 2, SuccessThreshold: 2})
	for range 5 {
		h.check(inactive(checks.OutcomeTokenInactive))
		h.check(healthy())
	}
	h.expect() // never two bad checks in a row
	h.check(inactive(checks.OutcomeTokenInactive))
	h.check(inactive(checks.OutcomeTokenInactive))
	h.expect("firing TokenIntrospectionInactive token_inactive")
	for range 5 {
		h.check(healthy())
		h.check(inactive(checks.OutcomeTokenInactive))
	}
	h.expect() // never two good checks in a row: stays firing
	h.check(healthy())
	h.check(healthy())
	h.expect("resolved TokenIntrospectionInactive token_inactive")
}

// A check that fails before introspection says nothing about it: the
// introspection alert neither fires nor resolves, and the acquisition alert
// fires on its own.
func TestChecksCountOnlyForWhatTheyCanTell(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 2})
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.expect("firing TokenIntrospectionInactive introspection_not_permitted")
	h.check(tokenFailure(checks.OutcomeClientRejected))
	h.check(tokenFailure(checks.OutcomeConnectError))
	h.expect("firing TokenAcquisitionFailed connect_error")
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.expect("resolved TokenAcquisitionFailed connect_error")
	h.check(healthy())
	h.expect("resolved TokenIntrospectionInactive introspection_not_permitted")
}

func TestReasonChangeWhileFiring(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 2})
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.check(inactive(checks.OutcomeIntrospectionNotPermitted))
	h.expect("firing TokenIntrospectionInactive introspection_not_permitted")
	// A new reason, even one that holds, keeps the alert as it fired.
	for range 4 {
		h.check(inactive(checks.OutcomeTokenInactive))
	}
	h.expect()
	if n := len(h.a.statuses()); n != 1 {
		t.Errorf("%d alerts held, want one per alertname", n)
	}
	h.check(healthy())
	h.expect("resolved TokenIntrospectionInactive introspection_not_permitted")
}

func TestAlertStateSurvivesReload(t *testing.T) {
	acme := configs.Org{Target: checks.Target{Name: "acme", TokenMode: "fresh", Labels: map[string]string{"team": "crm"}}}
	globex := configs.Org{Target: checks.Target{Name: "globex", TokenMode: "fresh"}}
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 3}, acme, globex)
	h.check(inactive(checks.OutcomeTokenInactive))
	h.check(inactive(checks.OutcomeTokenInactive))
	h.a.observe("globex", inactive(checks.OutcomeTokenInactive))
	h.a.observe("globex", inactive(checks.OutcomeTokenInactive))
	h.a.observe("globex", inactive(checks.OutcomeTokenInactive))
	h.expect("firing TokenIntrospectionInactive token_inactive")

	// Reload: same orgs, lower threshold. The pending count carries over.
	h.a.configure(configs.Alerting{FailureThreshold: 2, SuccessThreshold: 1, ResendInterval: time.Minute})
	h.setOrgs(acme, globex)
	h.expect()
	h.check(inactive(checks.OutcomeTokenInactive))
	h.expect("firing TokenIntrospectionInactive token_inactive")

	// Reload that changes acme's labels: the alert moves to the new labels.
	acme.Labels = map[string]string{"team": "integrations"}
	h.setOrgs(acme, globex)
	h.expect("resolved TokenIntrospectionInactive token_inactive", "firing TokenIntrospectionInactive token_inactive")
	for _, s := range h.a.statuses() {
		if s.Org == "acme" && s.BadChecks != 3 {
			t.Errorf("bad checks after reload = %d, want 3", s.BadChecks)
		}
	}

	// Reload without globex: its firing alert is resolved.
	h.setOrgs(acme)
	h.expect("resolved TokenIntrospectionInactive token_inactive")
	for _, s := range h.a.statuses() {
		if s.Org == "globex" {
			t.Errorf("the removed org still has alert state: %+v", s)
		}
	}
}

// A firing alert no destination accepted is not "firing", and is sent
// again (as new, so webhooks get it too) until one accepts it.
func TestFailedSendIsRetriedNotForgotten(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1, ResendInterval: time.Minute})
	h.check(inactive(checks.OutcomeTokenInactive))
	h.expect("firing TokenIntrospectionInactive token_inactive")
	h.clock.Advance(30 * time.Second)
	h.a.tick()
	h.expect()
	h.clock.Advance(30 * time.Second)
	h.a.tick()
	h.expect("firing TokenIntrospectionInactive token_inactive") // not marked as a re-send: nobody has it yet
	if st := h.state(AlertIntrospectionInactive); st != AlertSending {
		t.Errorf("state %s, want sending", st)
	}
	h.s.accept = true
	h.clock.Advance(time.Minute)
	h.a.tick()
	waitFor(t, "acceptance", func() bool { return h.state(AlertIntrospectionInactive) == AlertFiring })
	h.expect("firing TokenIntrospectionInactive token_inactive")
	h.clock.Advance(time.Minute)
	h.a.tick()
	h.expect("firing TokenIntrospectionInactive token_inactive resend")
}

func TestResendIntervalAndEndsAt(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1, ResendInterval: 30 * time.Second})
	h.s.accept = true
	h.check(inactive(checks.OutcomeTokenInactive))
	waitFor(t, "acceptance", func() bool { return h.state(AlertIntrospectionInactive) == AlertFiring })
	startsAt := h.s.last().Alert.StartsAt
	h.s.take()
	for i := 1; i <= 4; i++ {
		h.clock.Advance(15 * time.Second)
		h.a.tick()
		if i%2 == 1 {
			h.expect()
			continue
		}
		m := h.s.last()
		h.expect("firing TokenIntrospectionInactive token_inactive resend")
		if !m.Alert.StartsAt.Equal(startsAt) || !m.Alert.EndsAt.Equal(h.clock.Now().Add(2*time.Minute)) {
			t.Errorf("re-send %d: startsAt %s endsAt %s, want %s and now + 4 x 30s", i/2, m.Alert.StartsAt, m.Alert.EndsAt, startsAt)
		}
	}
}

// Through the real Router: a destination down while the alert fires and
// resolves gets both, in order, once it is back.
func TestResolveIsNeverLost(t *testing.T) {
	n := &flakyNotifier{failures: 5}
	r := notify.NewRouter(notify.RouterOptions{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	defer r.Stop(context.Background())
	r.Update([]notify.Destination{{Name: "am", Notifier: n, Resends: true}})
	c := fakeclock.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	a := newAlerter(slog.New(slog.DiscardHandler), r, c.Now, nil)
	a.configure(configs.Alerting{FailureThreshold: 1, SuccessThreshold: 1, ResendInterval: time.Minute})
	a.setOrgs([]configs.Org{{Target: checks.Target{Name: "acme"}}}, map[string]checks.Info{"acme": {Name: "acme"}})
	a.observe("acme", inactive(checks.OutcomeTokenInactive))
	a.observe("acme", healthy())
	waitFor(t, "the resolve", func() bool {
		got := n.delivered()
		return len(got) > 0 && got[len(got)-1] == "resolved"
	})
	if got := n.delivered(); !slices.Equal(got, []string{"resolved"}) && !slices.Equal(got, []string{"firing", "resolved"}) {
		t.Errorf("delivered %v", got)
	}
}

type flakyNotifier struct {
	mu       sync.Mutex
	failures int
	got      []string
}

func (f *flakyNotifier) Notify(_ context.Context, alerts ...alerting.Alert) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return true, errors.New("HTTP 503")
	}
	for _, a := range alerts {
		f.got = append(f.got, a.Status)
	}
	return false, nil
}

func (f *flakyNotifier) delivered() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func TestExpiresSoon(t *testing.T) {
	reuse := configs.Org{Target: checks.Target{Name: "acme", TokenMode: "reuse"}}
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 2, ExpiresSoonThreshold: 10 * time.Minute}, reuse)
	soon := func() *checks.Result {
		r := healthy()
		r.Token.Expiry = h.clock.Now().Add(time.Minute + 5*time.Minute)
		return r
	}
	h.check(soon())
	h.check(soon())
	m := h.s.last()
	h.expect("firing TokenExpiresSoon ok")
	if !strings.Contains(m.Alert.Annotations["description"], "expires at 2026-11-26T12:07:00Z, in 5m0s, less than expires_soon_threshold 10m0s") ||
		m.Alert.Labels["severity"] != "warning" || !strings.Contains(m.Alert.Annotations["fix"], "expires_soon_threshold") {
		t.Errorf("alert = %+v", m.Alert)
	}
	h.check(healthy()) // exp hours away
	h.expect("resolved TokenExpiresSoon ok")

	// token_mode fresh: never.
	h = newAlertHarness(t, configs.Alerting{FailureThreshold: 1, ExpiresSoonThreshold: 10 * time.Minute})
	h.check(soon())
	h.expect()
}

func TestEveryFailingOutcomeRaisesOneAlert(t *testing.T) {
	for _, tc := range []struct {
		res  *checks.Result
		want string
	}{
		{inactive(checks.OutcomeIntrospectionNotPermitted), AlertIntrospectionInactive},
		{inactive(checks.OutcomeTokenInactive), AlertIntrospectionInactive},
		{inactive(checks.OutcomeTokenInvalidatedEarly), AlertIntrospectionInactive},
		{tokenFailure(checks.OutcomeClientRejected), AlertAcquisitionFailed},
		{tokenFailure(checks.OutcomeGrantRejected), AlertAcquisitionFailed},
		{tokenFailure(checks.OutcomeRateLimited), AlertAcquisitionFailed},
		{tokenFailure(checks.OutcomeClockSkew), AlertAcquisitionFailed},
		{tokenFailure(checks.OutcomeServerError), AlertAcquisitionFailed},
		{tokenFailure(checks.OutcomeTimeout), AlertAcquisitionFailed},
		{&checks.Result{Outcome: checks.OutcomeDiscoveryFailed}, AlertAcquisitionFailed},
		{&checks.Result{Outcome: checks.OutcomeIntrospectionUnauthorized, Steps: []checks.StepResult{step("token", "ok"), step("introspect", "introspection_unauthorized")}}, AlertIntrospectionFailed},
		{&checks.Result{Outcome: checks.OutcomeMalformedResponse, Steps: []checks.StepResult{step("token", "ok"), step("introspect", "malformed_response")}}, AlertIntrospectionFailed},
		{&checks.Result{Outcome: checks.OutcomeConnectError, Steps: []checks.StepResult{step("token", "ok"), step("introspect", "connect_error")}}, AlertIntrospectionFailed},
		{&checks.Result{Outcome: checks.OutcomeSignatureMismatch, Steps: []checks.StepResult{step("token", "ok")}}, AlertSignatureMismatch},
		{&checks.Result{Outcome: checks.OutcomeExpectationFailed, Steps: []checks.StepResult{step("token", "ok")}}, AlertExpectationFailed},
		{&checks.Result{Outcome: checks.OutcomeResourceRejected, Steps: []checks.StepResult{step("token", "ok"), step("introspect", "ok"), step("probe", "resource_rejected")}}, AlertCheckFailing},
		{&checks.Result{Outcome: checks.OutcomeTLSError, Steps: []checks.StepResult{step("token", "ok"), step("introspect", "ok"), step("probe", "tls_error")}}, AlertCheckFailing},
		{&checks.Result{Outcome: checks.OutcomeRevokeFailed, Steps: []checks.StepResult{step("token", "ok"), step("revoke", "server_error")}}, AlertCheckFailing},
	} {
		t.Run(string(tc.res.Outcome)+"/"+tc.want, func(t *testing.T) {
			h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
			h.check(tc.res)
			h.expect(fmt.Sprintf("firing %s %s", tc.want, tc.res.Outcome))
		})
	}
	// Every outcome but ok maps to an alert.
	for _, o := range checks.AllOutcomes {
		got := primaryAlert(&checks.Result{Outcome: o})
		if (got == "") != (o == checks.OutcomeOK) {
			t.Errorf("outcome %s maps to %q", o, got)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// recordingNotifier is a destination that accepts everything and remembers it.
type recordingNotifier struct {
	mu     sync.Mutex
	alerts []alerting.Alert
}

func (r *recordingNotifier) Notify(_ context.Context, alerts ...alerting.Alert) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, alerts...)
	return false, nil
}

func (r *recordingNotifier) seen(status, org string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.alerts {
		if a.Status == status && a.Labels["org"] == org && a.Labels["alertname"] == AlertIntrospectionInactive {
			return true
		}
	}
	return false
}

// The agent with a simulated org whose introspection permission is taken
// away: the alert fires, survives a reload that changes the org, and
// resolves when the permission is back; removing an org resolves its alert.
func TestAgentRaisesAndResolvesAlerts(t *testing.T) {
	org := orgsim.New(orgsim.Options{})
	org.AddUser(orgsim.User{Username: "u@example.com", Password: "p", SecurityToken: "T"})
	org.AddApp(orgsim.App{ClientID: "app", ClientSecret: "app-secret", IntrospectAll: true})
	if err := org.Start(); err != nil {
		t.Fatal(err)
	}
	defer org.Close()
	config := func(timeout string, names ...string) *configs.Config {
		var b strings.Builder
		fmt.Fprintf(&b, "global: {schedule: \"@every 1h\", timeout: %s}\norgs:\n", timeout)
		for _, n := range names {
			fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    client: {id: app, secret: app-secret}\n"+
				"    grant: {type: password, username: u@example.com, password: pT}\n    labels: {team: crm}\n", n, org.URL())
		}
		b.WriteString("alerting: {failure_threshold: 2, success_threshold: 1, resend_interval: 1s}\n")
		cfg, err := configs.Parse([]byte(b.String()), t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	dest := &recordingNotifier{}
	router := notify.NewRouter(notify.RouterOptions{MinBackoff: time.Millisecond})
	defer router.Stop(context.Background())
	router.Update([]notify.Destination{{Name: "am", Notifier: dest, Resends: true}})
	ag := New(Options{Alerts: router})
	ag.Start()
	defer ag.Stop(context.Background())
	if err := ag.Apply(config("5s", "acme", "globex")); err != nil {
		t.Fatal(err)
	}
	probe := func(names ...string) {
		for _, n := range names {
			if _, _, err := ag.ProbeOrg(context.Background(), n, fresh); err != nil {
				t.Fatal(err)
			}
		}
	}
	state := func(org string) string {
		for _, s := range ag.Alerts() {
			if s.Org == org && s.Alertname == AlertIntrospectionInactive {
				return s.State
			}
		}
		return "none"
	}

	probe("acme", "globex")
	org.SetIntrospectAll("app", false)
	probe("acme", "globex")
	if s := state("acme"); s != AlertPending {
		t.Fatalf("after one inactive check: %s", s)
	}
	probe("acme", "globex")
	waitFor(t, "the alerts to fire", func() bool { return state("acme") == AlertFiring && state("globex") == AlertFiring })
	if !dest.seen(alerting.StatusFiring, "acme") {
		t.Fatal("the destination did not get the firing alert")
	}

	// A reload that changes acme (its timeout) restarts its job but keeps its alert.
	if err := ag.Apply(config("4s", "acme", "globex")); err != nil {
		t.Fatal(err)
	}
	if s := state("acme"); s != AlertFiring {
		t.Fatalf("after a reload: %s, want still firing", s)
	}
	// A reload without globex resolves its alert.
	if err := ag.Apply(config("4s", "acme")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "globex's resolve", func() bool { return dest.seen(alerting.StatusResolved, "globex") })

	org.SetIntrospectAll("app", true)
	probe("acme")
	waitFor(t, "acme's resolve", func() bool { return dest.seen(alerting.StatusResolved, "acme") })
	if s := state("acme"); s != "none" {
		t.Errorf("after the resolve: %s", s)
	}
}

// A reload that raises resend_interval must not let a firing alert run out
// of its endsAt before the next re-send: with 1m -> 10m the alert sent at
// 12:01 is valid until 12:05, so it goes out again at once, not at 12:11.
func TestRaisedResendIntervalKeepsAlertValid(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1, ResendInterval: time.Minute})
	h.s.accept = true
	h.check(inactive(checks.OutcomeTokenInactive))
	waitFor(t, "acceptance", func() bool { return h.state(AlertIntrospectionInactive) == AlertFiring })
	h.s.take()
	h.a.configure(configs.Alerting{FailureThreshold: 1, SuccessThreshold: 1, ResendInterval: 10 * time.Minute})
	h.clock.Advance(time.Minute)
	h.a.tick()
	m := h.s.last()
	h.expect("firing TokenIntrospectionInactive token_inactive resend")
	if want := h.clock.Now().Add(40 * time.Minute); !m.Alert.EndsAt.Equal(want) {
		t.Errorf("endsAt %s, want %s (4 x the new interval)", m.Alert.EndsAt, want)
	}
	// From then on, the new interval.
	h.clock.Advance(9 * time.Minute)
	h.a.tick()
	h.expect()
	h.clock.Advance(time.Minute)
	h.a.tick()
	h.expect("firing TokenIntrospectionInactive token_inactive resend")
}

// An org checked less often than resend_interval gets endsAt four check
// intervals ahead, so a restarted tokenwatch has time to fire it again
// before Alertmanager resolves it.
func TestEndsAtCoversSlowSchedules(t *testing.T) {
	slow := configs.Org{Target: checks.Target{Name: "acme", TokenMode: "fresh"}, Schedule: "*/5 * * * *"}
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1, ResendInterval: time.Minute}, slow)
	h.s.accept = true
	h.check(inactive(checks.OutcomeTokenInactive))
	m := h.s.last()
	if want := h.clock.Now().Add(20 * time.Minute); !m.Alert.EndsAt.Equal(want) {
		t.Errorf("firing endsAt %s, want %s (4 x the 5m schedule)", m.Alert.EndsAt, want)
	}
	waitFor(t, "acceptance", func() bool { return h.state(AlertIntrospectionInactive) == AlertFiring })
	h.s.take()
	h.clock.Advance(time.Minute)
	h.a.tick()
	m = h.s.last()
	h.expect("firing TokenIntrospectionInactive token_inactive resend")
	if want := h.clock.Now().Add(20 * time.Minute); !m.Alert.EndsAt.Equal(want) {
		t.Errorf("re-send endsAt %s, want %s", m.Alert.EndsAt, want)
	}
}

// A reload that removes introspection (introspection_url gone, discovery no
// longer offering it) leaves nothing that could clear the introspection
// alerts: a skipped introspect step resolves them.
func TestSkippedIntrospectionResolves(t *testing.T) {
	noIntrospection := func() *checks.Result {
		r := healthy()
		r.Token.Active = nil
		r.Steps[1] = checks.StepResult{Step: checks.StepIntrospect, Outcome: checks.OutcomeOK, Skipped: true}
		return r
	}
	introspectFailed := &checks.Result{Outcome: checks.OutcomeIntrospectionUnauthorized,
		Steps: []checks.StepResult{step("token", "ok"), step("introspect", "introspection_unauthorized")}}
	for _, tc := range []struct {
		bad       *checks.Result
		alertname string
	}{
		{inactive(checks.OutcomeTokenInactive), AlertIntrospectionInactive},
		{introspectFailed, AlertIntrospectionFailed},
	} {
		t.Run(tc.alertname, func(t *testing.T) {
			h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
			h.check(tc.bad)
			h.expect(fmt.Sprintf("firing %s %s", tc.alertname, tc.bad.Outcome))
			h.check(noIntrospection())
			h.expect(fmt.Sprintf("resolved %s %s", tc.alertname, tc.bad.Outcome))
		})
	}
	// A check that failed before introspection still tells nothing.
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
	h.check(inactive(checks.OutcomeTokenInactive))
	h.s.take()
	h.check(tokenFailure(checks.OutcomeClientRejected))
	h.expect("firing TokenAcquisitionFailed client_rejected")
	if st := h.state(AlertIntrospectionInactive); st == "none" {
		t.Error("a failed token step resolved the introspection alert")
	}
}

// One outage whose reason alternates is one alert: it keeps the labels it
// fired with, the description follows the latest check, and it resolves
// after success_threshold good checks.
func TestChangingReasonDoesNotFlap(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 2, ResendInterval: time.Minute})
	h.check(tokenFailure(checks.OutcomeServerError))
	h.check(tokenFailure(checks.OutcomeServerError))
	h.expect("firing TokenAcquisitionFailed server_error")
	for range 3 {
		h.check(tokenFailure(checks.OutcomeTimeout))
		h.check(tokenFailure(checks.OutcomeTimeout))
		h.check(tokenFailure(checks.OutcomeServerError))
	}
	h.check(tokenFailure(checks.OutcomeTimeout))
	h.expect()
	h.a.tick()
	m := h.s.last()
	h.expect("firing TokenAcquisitionFailed server_error")
	if d := m.Alert.Annotations["description"]; !strings.Contains(d, "the latest ended in timeout") {
		t.Errorf("description does not tell the latest outcome: %q", d)
	}
	for _, s := range h.a.statuses() {
		if s.Alertname == AlertAcquisitionFailed && s.Reason != "server_error" {
			t.Errorf("status reason %q, want the one it fired with", s.Reason)
		}
	}
	h.check(healthy())
	h.expect("resolved TokenAcquisitionFailed server_error")
}

// An acceptance of an earlier firing does not count for a later one of the
// same alert: the resolve and the new firing may never have got through.
func TestAcceptanceOfEarlierFiringIsIgnored(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
	h.check(inactive(checks.OutcomeTokenInactive))
	first := h.s.last()
	h.check(healthy())
	h.check(inactive(checks.OutcomeTokenInactive))
	second := h.s.last()
	h.expect("firing TokenIntrospectionInactive token_inactive",
		"resolved TokenIntrospectionInactive token_inactive",
		"firing TokenIntrospectionInactive token_inactive")
	first.Accepted("alertmanager/127.0.0.1:9093")
	if st := h.state(AlertIntrospectionInactive); st != AlertSending {
		t.Fatalf("after the earlier firing was accepted: %s, want sending", st)
	}
	second.Accepted("alertmanager/127.0.0.1:9093")
	if st := h.state(AlertIntrospectionInactive); st != AlertFiring {
		t.Fatalf("after the current firing was accepted: %s, want firing", st)
	}
}
