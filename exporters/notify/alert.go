// Package notify delivers alerts, for every destination alike: the Alert
// model (shaped like the alerts of Alertmanager's webhook payload), the
// Notifier interface that one package per destination implements, and a
// Router that gives each destination its own bounded queue, retries with
// backoff, and the delivery metrics.
//
// It knows nothing of how alerts are raised: the agent decides when an
// alert fires or resolves and hands the Router a Message.
package notify

import (
	"context"
	"maps"
	"time"

	"github.com/prometheus/common/model"
)

// Alert statuses, as Alertmanager's webhook payload names them.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Alert is one alert, firing or resolved. Its JSON is that of an alert in
// Alertmanager's webhook payload.
type Alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	// EndsAt is when the alert stops counting as firing: in the future for a
	// firing alert (Alertmanager resolves it by itself if no re-send comes),
	// the resolve time for a resolved one.
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"`
	// Fingerprint identifies the alert by its labels, as Alertmanager does.
	Fingerprint string `json:"fingerprint"`
}

// Resolved reports whether the alert is resolved.
func (a Alert) Resolved() bool { return a.Status == StatusResolved }

// Name is the alert's alertname label.
func (a Alert) Name() string { return a.Labels[model.AlertNameLabel] }

// Clone returns a copy that shares no map with a.
func (a Alert) Clone() Alert {
	a.Labels = maps.Clone(a.Labels)
	a.Annotations = maps.Clone(a.Annotations)
	return a
}

// Fingerprint is the identity Alertmanager gives an alert with these labels
// (the hash of the sorted label pairs), as 16 hex digits.
func Fingerprint(labels map[string]string) string {
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint().String()
}

// Notifier sends alerts to one destination. retry says whether a failure is
// worth trying again (the destination is down or overloaded) or not (it
// refused the request itself, e.g. HTTP 400).
type Notifier interface {
	Notify(ctx context.Context, alerts ...Alert) (retry bool, err error)
}
