package agent

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
	"github.com/tokenwatch/tokenwatch/internal/store"
)

// storedAlerts is what the store keeps of an org's alerts: every alert that
// is pending or active, and the resolves not yet delivered. A restart reads
// it back, so a firing alert keeps its startsAt, an org that recovered while
// tokenwatch was down is resolved at its first good check, and a resolve
// that was still queued is sent again.
type storedAlerts struct {
	Info      checks.Info      `json:"info"`
	TokenMode string           `json:"token_mode"`
	Interval  float64          `json:"interval_seconds"`
	Alerts    []storedAlert    `json:"alerts,omitempty"`
	Unsent    []alerting.Alert `json:"unsent_resolves,omitempty"`
}

type storedAlert struct {
	Name     string         `json:"name"`
	Bad      int            `json:"bad"`
	Good     int            `json:"good"`
	FirstBad time.Time      `json:"first_bad,omitzero"`
	Reason   checks.Outcome `json:"reason,omitempty"`
	Seen     storedVerdict  `json:"seen"`
	Active   bool           `json:"active"`
	Accepted bool           `json:"accepted"`
	Alert    alerting.Alert `json:"alert"`
	LastSent time.Time      `json:"last_sent,omitzero"`
}

type storedVerdict struct {
	Reason      checks.Outcome `json:"reason,omitempty"`
	Summary     string         `json:"summary,omitempty"`
	Explanation string         `json:"explanation,omitempty"`
	Fix         string         `json:"fix,omitempty"`
}

// saveLocked writes the org's alert state to the store when it changed
// since the last write; an org with nothing pending has no record. When
// now is set, the write is durable once the function it returns has
// returned: call that after releasing the lock (unlockAndSend).
func (a *alerter) saveLocked(oa *orgAlerts, now bool) (wait func()) {
	if a.store == nil || oa == nil {
		return nil
	}
	write := a.store.put
	if now {
		write = func(b store.Bucket, key string, raw []byte) { wait = a.store.putDurable(b, key, raw) }
	}
	if len(oa.alerts) == 0 && len(oa.unsent) == 0 {
		if oa.saved != nil {
			oa.saved = nil
			write(store.Alerts, oa.info.Name, nil)
		}
		return wait
	}
	rec := storedAlerts{Info: oa.info, TokenMode: oa.tokenMode, Interval: oa.interval.Seconds()}
	for _, st := range sortedStates(oa) {
		rec.Alerts = append(rec.Alerts, storedAlert{
			Name: st.name, Bad: st.bad, Good: st.good, FirstBad: st.firstBad, Reason: st.reason,
			Seen:   storedVerdict{Reason: st.seen.reason, Summary: st.seen.summary, Explanation: st.seen.explanation, Fix: st.seen.fix},
			Active: st.active, Accepted: st.accepted, Alert: st.alert, LastSent: st.lastSent,
		})
	}
	for _, fp := range slices.Sorted(maps.Keys(oa.unsent)) {
		rec.Unsent = append(rec.Unsent, oa.unsent[fp])
	}
	raw, err := json.Marshal(rec)
	if err != nil || slices.Equal(raw, oa.saved) {
		return nil
	}
	oa.saved = raw
	write(store.Alerts, oa.info.Name, raw)
	return wait
}

// load reads the alert state of before a restart. Orgs no longer configured
// are resolved by the setOrgs that follows.
func (a *alerter) load() {
	if a.store == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.store.each(store.Alerts, func(org string, raw []byte) error {
		var rec storedAlerts
		if err := json.Unmarshal(raw, &rec); err != nil {
			a.logger.Warn("stored alert state unreadable; ignored", "org", org, "err", err)
			return nil
		}
		rec.Info.Name = org
		oa := newOrgAlerts(rec.Info, rec.TokenMode, time.Duration(rec.Interval*float64(time.Second)))
		oa.saved = slices.Clone(raw)
		for _, sa := range rec.Alerts {
			st := &alertState{name: sa.Name, bad: sa.Bad, good: sa.Good, firstBad: sa.FirstBad, reason: sa.Reason,
				seen: verdict{known: true, bad: true, reason: sa.Seen.Reason, summary: sa.Seen.Summary,
					explanation: sa.Seen.Explanation, fix: sa.Seen.Fix},
				active: sa.Active, accepted: sa.Accepted, alert: sa.Alert, lastSent: sa.LastSent}
			if st.active {
				a.generation++
				st.generation = a.generation
				a.active++
			}
			oa.alerts[sa.Name] = st
		}
		for _, r := range rec.Unsent {
			oa.unsent[r.Fingerprint] = r
		}
		a.orgs[org] = oa
		return nil
	})
	if err != nil {
		a.logger.Warn("reading the stored alert state failed", "err", err)
	}
}

// resume sends, after a restart, the resolves that were not delivered and
// the active alerts under their first startsAt: Alertmanager takes them as
// the same alerts, and one whose destination had not accepted it yet gets it.
func (a *alerter) resume() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock()
	var msgs []alerting.Message
	for _, org := range slices.Sorted(maps.Keys(a.removed)) {
		oa := a.removed[org]
		for _, fp := range slices.Sorted(maps.Keys(oa.unsent)) {
			msgs = append(msgs, a.resolveMessage(org, oa.unsent[fp]))
		}
	}
	for _, org := range slices.Sorted(maps.Keys(a.orgs)) {
		oa := a.orgs[org]
		for _, fp := range slices.Sorted(maps.Keys(oa.unsent)) {
			msgs = append(msgs, a.resolveMessage(org, oa.unsent[fp]))
		}
		for _, st := range sortedStates(oa) {
			if !st.active {
				continue
			}
			st.alert.EndsAt = a.endsAt(oa, now)
			// The link follows --web.external-url of this run.
			st.alert.GeneratorURL = GeneratorURL(a.externalURL, org)
			st.lastSent = now
			m := a.message(oa, st)
			m.Resend = st.accepted
			msgs = append(msgs, m)
		}
	}
	if len(msgs) > 0 {
		a.logger.Info("alert state restored from the store", "notifications", len(msgs))
	}
	a.sendLocked(msgs)
}
