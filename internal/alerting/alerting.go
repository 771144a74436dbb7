// Package alerting is the alert model the agent raises and the exporters
// deliver: an Alert shaped like the alerts of Alertmanager's webhook
// payload, and the Message that carries one to the destinations. It sits
// between the two so that neither imports the other.
package alerting

import (
	"maps"
	"net/url"
	"strings"
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
	EndsAt time.Time `json:"endsAt"`
	// GeneratorURL links to what raised the alert: the org's row on the
	// status page under --web.external-url; empty without one.
	GeneratorURL string `json:"generatorURL"`
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

// Message is one alert handed to the destinations.
type Message struct {
	Alert Alert
	// Resend marks a periodic repeat of a firing alert that a destination
	// already accepted. Only destinations that want re-sends get it, and a
	// full queue drops re-sends first.
	Resend bool
	// Accepted, when set, is called each time a destination accepted the
	// alert, from that destination's delivery goroutine.
	Accepted func(destination string)
}

// NormalizeURL returns the URL as a destination is told apart by: scheme
// and host in lower case, the scheme's default port dropped, no trailing
// slash, no user info (a rotated password is the same destination).
func NormalizeURL(u *url.URL) string {
	n := *u
	n.User = nil
	n.Scheme = strings.ToLower(n.Scheme)
	host, port := strings.ToLower(n.Hostname()), n.Port()
	if (n.Scheme == "http" && port == "80") || (n.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	n.Host = host
	n.Path = strings.TrimSuffix(n.Path, "/")
	n.RawPath = strings.TrimSuffix(n.RawPath, "/")
	return n.String()
}
