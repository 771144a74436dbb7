// Package webhook posts alerts to any HTTP endpoint in the shape of
// Alertmanager's webhook payload (version "4"), so that a receiver written
// for Alertmanager accepts them unchanged. With a secret, each request is
// signed: X-Tokenwatch-Signature: sha256=<hex HMAC-SHA256 of the body>.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/prometheus/common/model"

	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// SignatureHeader carries the HMAC-SHA256 of the body, as "sha256=<hex>".
const SignatureHeader = "X-Tokenwatch-Signature"

// PayloadVersion is the version of Alertmanager's webhook payload this follows.
const PayloadVersion = "4"

// groupBy are the labels a payload is grouped by, as an Alertmanager route
// with group_by: [alertname, org] would.
var groupBy = []string{"alertname", "org"}

// Options configure a Notifier.
type Options struct {
	URL string
	// Secret keys the signature header; no header when empty.
	Secret string
	// SendResolved sends resolved alerts too; otherwise they are left out.
	SendResolved bool
	// Receiver names the receiver in the payload; "tokenwatch" when empty.
	Receiver string
	// ExternalURL is the payload's externalURL: the URL under which
	// tokenwatch is reached (--web.external-url), whose status page shows
	// the alerts, as Alertmanager puts its own external URL there.
	ExternalURL string
	// HTTPClient holds the TLS and proxy settings.
	HTTPClient promconfig.HTTPClientConfig
	// Timeout bounds one request; 10s when zero.
	Timeout   time.Duration
	UserAgent string
}

// Payload is the request body: Alertmanager's webhook payload.
type Payload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []alerting.Alert  `json:"alerts"`
}

// Notifier posts alerts to one webhook.
type Notifier struct {
	url          string
	secret       []byte
	sendResolved bool
	receiver     string
	externalURL  string
	header       http.Header
	client       *http.Client
	// secrets must not appear in an error: the URL's path and query often
	// carry a token, and a receiver's error page may echo them.
	secrets []string
}

var _ notify.Notifier = (*Notifier)(nil)

// New returns a Notifier for the webhook at o.URL.
func New(o Options) (*Notifier, error) {
	u, err := notify.ParseURL("webhook", o.URL)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Receiver == "" {
		o.Receiver = "tokenwatch"
	}
	client, secrets, err := notify.NewHTTPClient(o.HTTPClient, "webhook", o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	n := &Notifier{
		url:          o.URL,
		sendResolved: o.SendResolved,
		receiver:     o.Receiver,
		externalURL:  o.ExternalURL,
		header:       http.Header{},
		client:       client,
	}
	n.secrets = append(secrets, notify.URLSecrets(u)...)
	if o.Secret != "" {
		n.secret = []byte(o.Secret)
		n.secrets = append(n.secrets, o.Secret)
	}
	if o.UserAgent != "" {
		n.header.Set("User-Agent", o.UserAgent)
	}
	return n, nil
}

// Notify posts one payload per group of alerts that share alertname and
// org, leaving resolved ones out unless SendResolved is set. A group's
// status, groupKey and common labels then describe that group alone, so a
// receiver that acts on them sees a resolve under the same groupKey as the
// firing payload it closes, never inside another org's firing payload.
//
// The payloads go out in order and Notify stops at the first failure. The
// Notifier contract has one result for the whole batch, so a retry sends
// again the groups that were already accepted; receivers see a repeat of the
// same status, which Alertmanager's own retries also produce.
func (n *Notifier) Notify(ctx context.Context, alerts ...alerting.Alert) (bool, error) {
	for _, p := range n.payloads(alerts) {
		body, err := json.Marshal(p)
		if err != nil {
			return false, fmt.Errorf("webhook: encode payload: %w", err)
		}
		header := n.header.Clone()
		if n.secret != nil {
			header.Set(SignatureHeader, Sign(n.secret, body))
		}
		retry, err := notify.PostJSON(ctx, n.client, notify.Request{URL: n.url, Header: header, Body: body, Secrets: n.secrets})
		if err != nil {
			return retry, fmt.Errorf("webhook: post %d alert(s): %w", len(p.Alerts), err)
		}
	}
	return false, nil
}

// Sign returns the signature header value of body: "sha256=" and the hex
// HMAC-SHA256 of the body keyed by key.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is the signature of body under key, in
// constant time: what a receiver does.
func Verify(key, body []byte, header string) bool {
	return hmac.Equal([]byte(header), []byte(Sign(key, body)))
}

// payloads groups the alerts by groupBy, in the order each group first
// appears, and returns one payload per group.
func (n *Notifier) payloads(alerts []alerting.Alert) []Payload {
	var keys []string
	groups := map[string][]alerting.Alert{}
	for _, a := range alerts {
		if a.Resolved() && !n.sendResolved {
			continue
		}
		a = a.Clone()
		if a.Fingerprint == "" {
			a.Fingerprint = alerting.Fingerprint(a.Labels)
		}
		if !a.Resolved() {
			// Alertmanager's webhook shows firing alerts without an end.
			a.EndsAt = time.Time{}
		}
		k := groupLabels(a.Labels).String()
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], a)
	}
	out := make([]Payload, 0, len(keys))
	for _, k := range keys {
		out = append(out, n.payload(groups[k]))
	}
	return out
}

// groupLabels are the groupBy labels an alert has.
func groupLabels(labels map[string]string) model.LabelSet {
	ls := model.LabelSet{}
	for _, l := range groupBy {
		if v, ok := labels[l]; ok {
			ls[model.LabelName(l)] = model.LabelValue(v)
		}
	}
	return ls
}

// payload is the payload of one group: alerts that share their groupBy labels.
func (n *Notifier) payload(alerts []alerting.Alert) Payload {
	p := Payload{
		Version:     PayloadVersion,
		Status:      alerting.StatusResolved,
		Receiver:    n.receiver,
		ExternalURL: n.externalURL,
		Alerts:      alerts,
		GroupLabels: map[string]string{},
	}
	var labels, annotations []map[string]string
	for _, a := range alerts {
		if !a.Resolved() {
			p.Status = alerting.StatusFiring
		}
		labels = append(labels, a.Labels)
		annotations = append(annotations, a.Annotations)
	}
	p.CommonLabels = common(labels)
	p.CommonAnnotations = common(annotations)
	ls := groupLabels(p.CommonLabels)
	for k, v := range ls {
		p.GroupLabels[string(k)] = string(v)
	}
	p.GroupKey = "{}/tokenwatch:" + ls.String()
	return p
}

// common returns the pairs every map has.
func common(ms []map[string]string) map[string]string {
	out := map[string]string{}
	if len(ms) == 0 {
		return out
	}
	for k, v := range ms[0] {
		out[k] = v
	}
	for _, m := range ms[1:] {
		for k, v := range out {
			if mv, ok := m[k]; !ok || mv != v {
				delete(out, k)
			}
		}
	}
	return out
}
