package agent

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// States of an alert, as AlertStatus names them.
const (
	// AlertPending: bad checks were seen, fewer than failure_threshold.
	AlertPending = "pending"
	// AlertSending: the threshold was reached and the alert sent, but no
	// destination has accepted it yet.
	AlertSending = "sending"
	// AlertFiring: at least one destination accepted the alert.
	AlertFiring = "firing"
)

// endsAtResends is how many intervals (the longer of resend_interval and
// the org's check interval) a firing alert stays valid in Alertmanager
// without a re-send, as Prometheus does with its evaluation interval: a
// tokenwatch that died lets its alerts resolve by themselves, and one that
// restarts has about that long to fire them again.
const endsAtResends = 4

// resendMargin: an alert whose endsAt is closer than this many
// resend_intervals is re-sent at once, so that a reload that raised
// resend_interval does not let it lapse before its next re-send.
const resendMargin = 2

// AlertSender is where alert notifications go; *notify.Router implements it.
type AlertSender interface {
	Send(msgs ...alerting.Message)
	SendTo(destinations []string, msgs ...alerting.Message)
}

// AlertStatus is one alert the agent holds.
type AlertStatus struct {
	Org       string `json:"org"`
	Alertname string `json:"alertname"`
	// Reason is the outcome in the reason label: the one it fired with, the
	// latest bad outcome while pending.
	Reason   string `json:"reason"`
	Severity string `json:"severity"`
	// State is AlertPending, AlertSending or AlertFiring.
	State string `json:"state"`
	// Since is when the alert fired, or for a pending one when the first bad check of the run started.
	Since time.Time `json:"since"`
	// BadChecks counts the consecutive bad checks.
	BadChecks int `json:"bad_checks"`
}

// alerter is the alert state machine of every org: per org and alertname,
// it counts consecutive bad and good checks, fires after failure_threshold
// bad ones, resolves after success_threshold good ones, and re-sends firing
// alerts every resend_interval. It is keyed by org name, so it survives
// reloads; an org that goes away has its alerts resolved.
//
// A check only counts for the alerts it can speak to: a check whose token
// step failed says nothing about introspection, so it neither fires nor
// resolves TokenIntrospectionInactive.
//
// The reason label is fixed when the alert fires and kept while the checks
// stay bad for that alertname, whatever their outcome: one outage whose
// reason alternates (server_error, timeout) is one alert, not a resolve and
// a new firing at each change. The description tells the latest outcome.
// A change of the org's labels on reload resolves the alert under the old
// labels and fires it under the new ones. An org has at most one firing
// alert per alertname.
type alerter struct {
	logger *slog.Logger
	sender AlertSender
	clock  func() time.Time
	// externalURL is where tokenwatch is reachable (--web.external-url):
	// alerts link to their org's row on its status page.
	externalURL string
	// store keeps each org's alert state across restarts (alertstate.go).
	store *stateWriter

	mu   sync.Mutex
	cfg  configs.Alerting
	orgs map[string]*orgAlerts
	// removed holds orgs no longer configured whose resolves are not
	// delivered yet.
	removed map[string]*orgAlerts
	// generation numbers firing episodes, so that the acceptance of an
	// earlier firing is not credited to a later one of the same alert.
	generation uint64
	// active counts the active alerts of every org, so that the re-send
	// tick costs nothing while none is.
	active int
	// order makes messages leave in the order their changes were made under
	// mu, though the durable write before some of them is waited for
	// outside it (unlockAndSend).
	order sendOrder
}

// orgAlerts is the alert state of one org.
type orgAlerts struct {
	info      checks.Info
	tokenMode string
	// interval is the longest gap between the org's checks (0: unknown).
	interval time.Duration
	alerts   map[string]*alertState
	// unsent holds resolves no destination has accepted yet, by fingerprint,
	// kept in the store so a restart sends them again.
	unsent map[string]alerting.Alert
	// saved is what the store holds of the org, to write only changes.
	saved []byte
}

// alertState is one (org, alertname).
type alertState struct {
	name string
	// bad and good count consecutive checks; one of them is zero.
	bad, good int
	// firstBad is when the current run of bad checks began.
	firstBad time.Time
	// reason is the latest bad outcome.
	reason checks.Outcome
	// seen is what the latest bad check said, for the annotations.
	seen verdict
	// active is true from firing to resolving: alert holds what is sent.
	active   bool
	accepted bool
	alert    alerting.Alert
	lastSent time.Time
	// generation is the firing episode the alert belongs to.
	generation uint64
}

// verdict is what one check says about one alert.
type verdict struct {
	// known is false when the check did not get far enough to tell.
	known, bad  bool
	reason      checks.Outcome
	summary     string
	explanation string
	fix         string
}

func newAlerter(logger *slog.Logger, sender AlertSender, clock func() time.Time, st *stateWriter) *alerter {
	return &alerter{
		logger: logger,
		sender: sender,
		clock:  clock,
		store:  st,
		cfg: configs.Alerting{
			FailureThreshold:     configs.DefaultFailureThreshold,
			SuccessThreshold:     configs.DefaultSuccessThreshold,
			ResendInterval:       configs.DefaultResendInterval,
			ExpiresSoonThreshold: configs.DefaultExpiresSoonThreshold,
		},
		orgs:    map[string]*orgAlerts{},
		removed: map[string]*orgAlerts{},
	}
}

// configure takes the thresholds of a (re)loaded configuration; they apply
// from the next check on.
func (a *alerter) configure(cfg configs.Alerting) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg = cfg
	a.cfg.FailureThreshold = max(a.cfg.FailureThreshold, 1)
	a.cfg.SuccessThreshold = max(a.cfg.SuccessThreshold, 1)
	if a.cfg.ResendInterval <= 0 {
		a.cfg.ResendInterval = configs.DefaultResendInterval
	}
}

// setOrgs makes orgs the set of orgs: alerts of orgs no longer there are
// resolved and forgotten; orgs whose labels changed have their firing
// alerts re-sent under the new labels.
func (a *alerter) setOrgs(orgs []configs.Org, infos map[string]checks.Info) {
	a.mu.Lock()
	locked := true
	defer func() {
		if locked {
			a.mu.Unlock()
		}
	}()
	now := a.clock()
	var waits []func()
	var msgs []alerting.Message
	keep := map[string]bool{}
	for _, o := range orgs {
		info, ok := infos[o.Name]
		if !ok {
			continue
		}
		keep[o.Name] = true
		oa, ok := a.orgs[o.Name]
		if !ok {
			oa = newOrgAlerts(info, o.TokenMode, scheduleInterval(o.Schedule))
			if gone := a.removed[o.Name]; gone != nil {
				// Back before its resolves were delivered: they stay due.
				oa.unsent = gone.unsent
				delete(a.removed, o.Name)
			}
			a.orgs[o.Name] = oa
			continue
		}
		relabel := !maps.Equal(oa.info.Labels, info.Labels)
		oa.info, oa.tokenMode, oa.interval = info, o.TokenMode, scheduleInterval(o.Schedule)
		if !relabel {
			continue
		}
		for _, st := range sortedStates(oa) {
			if st.active {
				reason := checks.Outcome(st.alert.Labels["reason"])
				msgs = append(msgs, a.resolveLocked(oa, st, now, "the org's labels changed")...)
				msgs = append(msgs, a.fireLocked(oa, st, reason, now))
			}
		}
	}
	for name, oa := range a.orgs {
		if keep[name] {
			continue
		}
		for _, st := range sortedStates(oa) {
			if st.active {
				msgs = append(msgs, a.resolveLocked(oa, st, now, "the org was removed from the configuration")...)
			}
		}
		delete(a.orgs, name)
		// Its resolves are kept, in memory and in the store, until delivered.
		oa.alerts = map[string]*alertState{}
		if len(oa.unsent) > 0 {
			a.removed[name] = oa
		}
		waits = append(waits, a.saveLocked(oa, true))
	}
	for name := range keep {
		waits = append(waits, a.saveLocked(a.orgs[name], len(msgs) > 0))
	}
	locked = false
	a.unlockAndSend(waits, msgs)
}

// observe runs the state machine on a finished check.
func (a *alerter) observe(org string, res *checks.Result) {
	a.mu.Lock()
	locked := true
	defer func() {
		if locked {
			a.mu.Unlock()
		}
	}()
	oa, ok := a.orgs[org]
	if !ok {
		return
	}
	now := a.clock()
	var msgs []alerting.Message
	for _, name := range AlertNames {
		v := a.evaluate(name, oa, res, now)
		if !v.known {
			continue
		}
		st := oa.alerts[name]
		if !v.bad {
			if st == nil {
				continue
			}
			st.bad = 0
			st.good++
			switch {
			case !st.active:
				delete(oa.alerts, name)
			case st.good >= a.cfg.SuccessThreshold:
				msgs = append(msgs, a.resolveLocked(oa, st, now, "")...)
				delete(oa.alerts, name)
			}
			continue
		}
		if st == nil {
			st = &alertState{name: name}
			oa.alerts[name] = st
		}
		st.good = 0
		st.bad++
		if st.bad == 1 {
			st.firstBad = res.Start
		}
		st.reason, st.seen = v.reason, v
		switch {
		case !st.active && st.bad >= a.cfg.FailureThreshold:
			msgs = append(msgs, a.fireLocked(oa, st, v.reason, now))
		case st.active:
			// Still firing under the reason it fired with; the next re-send
			// carries the latest outcome and numbers.
			st.alert.Annotations = a.annotations(oa, st)
		}
	}
	// A firing or a resolve is written before it is sent: a crash must not
	// undo it (re-fire a resolved alert, or fire one again as new).
	wait := a.saveLocked(oa, len(msgs) > 0)
	locked = false
	a.unlockAndSend([]func(){wait}, msgs)
}

// tick re-sends the firing alerts whose resend_interval has passed, or
// whose endsAt is near (resend_interval was raised since they were sent).
// An alert no destination has accepted yet goes out as new, so that a
// destination that does not take re-sends (a webhook) gets it again too.
func (a *alerter) tick() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active == 0 {
		return
	}
	now := a.clock()
	type dueAlert struct {
		oa *orgAlerts
		st *alertState
	}
	var due []dueAlert
	for _, oa := range a.orgs {
		for _, st := range oa.alerts {
			if st.active && (now.Sub(st.lastSent) >= a.cfg.ResendInterval ||
				st.alert.EndsAt.Sub(now) < resendMargin*a.cfg.ResendInterval) {
				due = append(due, dueAlert{oa, st})
			}
		}
	}
	if len(due) == 0 {
		return
	}
	// Sorted, by org and alertname, only what is sent.
	slices.SortFunc(due, func(x, y dueAlert) int {
		if c := strings.Compare(x.oa.info.Name, y.oa.info.Name); c != 0 {
			return c
		}
		return strings.Compare(x.st.name, y.st.name)
	})
	msgs := make([]alerting.Message, 0, len(due))
	for _, d := range due {
		d.st.alert.EndsAt = a.endsAt(d.oa, now)
		d.st.lastSent = now
		m := a.message(d.oa, d.st)
		m.Resend = d.st.accepted
		msgs = append(msgs, m)
	}
	a.sendLocked(msgs)
}

func newOrgAlerts(info checks.Info, tokenMode string, interval time.Duration) *orgAlerts {
	return &orgAlerts{info: info, tokenMode: tokenMode, interval: interval,
		alerts: map[string]*alertState{}, unsent: map[string]alerting.Alert{}}
}

// sendFiringTo sends every active alert to the named destinations, under
// the lock so that no resolve of one of them can overtake it.
func (a *alerter) sendFiringTo(names []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(names) == 0 || a.sender == nil {
		return
	}
	var msgs []alerting.Message
	for _, org := range slices.Sorted(maps.Keys(a.orgs)) {
		oa := a.orgs[org]
		for _, st := range sortedStates(oa) {
			if st.active {
				msgs = append(msgs, a.message(oa, st))
			}
		}
	}
	if len(msgs) > 0 {
		a.order.inTurn(a.order.ticket(), func() { a.sender.SendTo(names, msgs...) })
	}
}

// statuses lists every alert that is pending or active, by org and alertname.
func (a *alerter) statuses() []AlertStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AlertStatus
	for _, org := range slices.Sorted(maps.Keys(a.orgs)) {
		oa := a.orgs[org]
		for _, st := range sortedStates(oa) {
			s := AlertStatus{
				Org: org, Alertname: st.name, Reason: string(st.reason), Severity: alertSeverity[st.name],
				State: AlertPending, Since: st.firstBad, BadChecks: st.bad,
			}
			if st.active {
				s.Reason = st.alert.Labels["reason"]
				s.Since = st.alert.StartsAt
				s.State = AlertSending
				if st.accepted {
					s.State = AlertFiring
				}
			}
			out = append(out, s)
		}
	}
	return out
}

// fireLocked makes st active with the given reason label.
func (a *alerter) fireLocked(oa *orgAlerts, st *alertState, reason checks.Outcome, now time.Time) alerting.Message {
	labels := make(map[string]string, len(oa.info.Labels)+4)
	maps.Copy(labels, oa.info.Labels)
	labels["alertname"] = st.name
	labels["org"] = oa.info.Name
	labels["reason"] = string(reason)
	labels["severity"] = alertSeverity[st.name]
	if !st.active {
		a.active++
	}
	st.active, st.accepted = true, false
	a.generation++
	st.generation = a.generation
	st.lastSent = now
	st.alert = alerting.Alert{
		Status:       alerting.StatusFiring,
		Labels:       labels,
		Annotations:  a.annotations(oa, st),
		StartsAt:     now,
		EndsAt:       a.endsAt(oa, now),
		GeneratorURL: GeneratorURL(a.externalURL, oa.info.Name),
		Fingerprint:  alerting.Fingerprint(labels),
	}
	a.logger.Info("alert raised", "org", oa.info.Name, "alertname", st.name, "reason", reason, "bad_checks", st.bad)
	return a.message(oa, st)
}

// endsAt is how long a firing alert sent now stays valid without a re-send:
// endsAtResends times the longer of resend_interval and the org's check
// interval, so that a slow schedule is not outrun.
func (a *alerter) endsAt(oa *orgAlerts, now time.Time) time.Time {
	return now.Add(endsAtResends * max(a.cfg.ResendInterval, oa.interval))
}

// resolveLocked sends st's alert as resolved and makes st inactive.
func (a *alerter) resolveLocked(oa *orgAlerts, st *alertState, now time.Time, why string) []alerting.Message {
	if !st.active {
		return nil
	}
	alert := st.alert.Clone()
	alert.Status = alerting.StatusResolved
	alert.EndsAt = now
	a.active--
	st.active, st.accepted = false, false
	if why == "" {
		why = fmt.Sprintf("%d consecutive good check(s)", st.good)
	}
	a.logger.Info("alert resolved", "org", oa.info.Name, "alertname", st.name, "reason", alert.Labels["reason"], "why", why)
	oa.unsent[alert.Fingerprint] = alert
	return []alerting.Message{a.resolveMessage(oa.info.Name, alert)}
}

// resolveMessage is a resolve notification that, once a destination took
// it, is no longer kept for re-sending after a restart.
func (a *alerter) resolveMessage(org string, alert alerting.Alert) alerting.Message {
	fp, endsAt := alert.Fingerprint, alert.EndsAt
	return alerting.Message{Alert: alert.Clone(), Accepted: func(string) { a.resolveAccepted(org, fp, endsAt) }}
}

func (a *alerter) resolveAccepted(org, fingerprint string, endsAt time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	oa, ok := a.orgs[org]
	if !ok {
		if oa, ok = a.removed[org]; !ok {
			return
		}
	}
	if r, ok := oa.unsent[fingerprint]; ok && r.EndsAt.Equal(endsAt) {
		delete(oa.unsent, fingerprint)
		if len(oa.unsent) == 0 && a.removed[org] == oa {
			delete(a.removed, org)
		}
		a.saveLocked(oa, false)
	}
}

// message is the firing notification of st, which reports acceptance back
// for st's current firing episode.
func (a *alerter) message(oa *orgAlerts, st *alertState) alerting.Message {
	org, name, fp, gen := oa.info.Name, st.name, st.alert.Fingerprint, st.generation
	return alerting.Message{
		Alert:    st.alert.Clone(),
		Accepted: func(destination string) { a.accepted(org, name, fp, gen, destination) },
	}
}

// accepted records that a destination took a firing alert: from now on it
// is firing. An acceptance of an earlier episode (fired, resolved, fired
// again: same fingerprint) is ignored, as its resolve and the new firing
// may not have got through.
func (a *alerter) accepted(org, name, fingerprint string, generation uint64, destination string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	oa, ok := a.orgs[org]
	if !ok {
		return
	}
	st, ok := oa.alerts[name]
	if !ok || !st.active || st.accepted || st.alert.Fingerprint != fingerprint || st.generation != generation {
		return
	}
	st.accepted = true
	a.logger.Info("alert firing", "org", org, "alertname", name, "reason", st.alert.Labels["reason"], "accepted_by", destination)
	a.saveLocked(oa, false)
}

func (a *alerter) sendLocked(msgs []alerting.Message) {
	// In the lock's order, so that a resolve is never queued before the
	// firing message it follows.
	if len(msgs) > 0 && a.sender != nil {
		a.order.inTurn(a.order.ticket(), func() { a.sender.Send(msgs...) })
	}
}

// unlockAndSend releases the lock, waits for the durable writes that msgs
// follow (waits: saveLocked's), then sends msgs in the order the lock gave
// them. Waiting outside the lock lets the writes of many orgs that change
// at once (their server went down) share one commit of the store instead
// of taking turns at one each.
func (a *alerter) unlockAndSend(waits []func(), msgs []alerting.Message) {
	send := len(msgs) > 0 && a.sender != nil
	var turn uint64
	if send {
		turn = a.order.ticket()
	}
	a.mu.Unlock()
	for _, w := range waits {
		if w != nil {
			w()
		}
	}
	if send {
		a.order.inTurn(turn, func() { a.sender.Send(msgs...) })
	}
}

// sendOrder hands out turns to send and lets each go in its turn.
type sendOrder struct {
	mu           sync.Mutex
	cond         *sync.Cond
	issued, next uint64
}

// ticket returns the next turn; take it under the alerter's lock.
func (o *sendOrder) ticket() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.issued
	o.issued++
	return t
}

// inTurn runs send when every earlier turn has run; every ticket taken must
// come here once.
func (o *sendOrder) inTurn(turn uint64, send func()) {
	o.mu.Lock()
	if o.cond == nil {
		o.cond = sync.NewCond(&o.mu)
	}
	for o.next != turn {
		o.cond.Wait()
	}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.next++
		o.cond.Broadcast()
		o.mu.Unlock()
	}()
	send()
}

func sortedStates(oa *orgAlerts) []*alertState {
	out := make([]*alertState, 0, len(oa.alerts))
	for _, st := range oa.alerts {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
