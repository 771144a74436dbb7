// Package alertmanager sends alerts to an Alertmanager through its API v2
// (POST /api/v2/alerts), as Prometheus does, with basic auth, a bearer
// token or TLS client settings. For an HA pair, configure one Notifier per
// member: each gets every alert and Alertmanager de-duplicates.
package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// alertsPath is the API v2 endpoint under the base URL.
const alertsPath = "/api/v2/alerts"

// Options configure a Notifier.
type Options struct {
	// URL is the Alertmanager base URL, e.g. http://127.0.0.1:9093 or
	// https://monitoring.example.com/alertmanager.
	URL string
	// HTTPClient holds basic auth or an authorization (bearer token), TLS
	// and proxy settings.
	HTTPClient promconfig.HTTPClientConfig
	// Timeout bounds one request; 10s when zero.
	Timeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// Notifier posts alerts to one Alertmanager.
type Notifier struct {
	endpoint string
	header   http.Header
	client   *http.Client
	secrets  []string
}

var _ notify.Notifier = (*Notifier)(nil)

// New returns a Notifier for the Alertmanager at o.URL.
func New(o Options) (*Notifier, error) {
	u, err := notify.ParseURL("alertmanager", o.URL)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	client, secrets, err := notify.NewHTTPClient(o.HTTPClient, "alertmanager", o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	n := &Notifier{
		endpoint: u.JoinPath(alertsPath).String(),
		header:   http.Header{},
		client:   client,
		secrets:  secrets,
	}
	// A path prefix or query may carry a token, and an error page may echo
	// the request path.
	n.secrets = append(n.secrets, notify.URLSecrets(u)...)
	if o.UserAgent != "" {
		n.header.Set("User-Agent", o.UserAgent)
	}
	return n, nil
}

// postableAlert is an alert as API v2 takes it.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Notify posts the alerts in one request.
func (n *Notifier) Notify(ctx context.Context, alerts ...alerting.Alert) (bool, error) {
	if len(alerts) == 0 {
		return false, nil
	}
	body := make([]postableAlert, len(alerts))
	for i, a := range alerts {
		body[i] = postableAlert{
			Labels:       a.Labels,
			Annotations:  a.Annotations,
			StartsAt:     a.StartsAt,
			EndsAt:       a.EndsAt,
			GeneratorURL: a.GeneratorURL,
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return false, fmt.Errorf("alertmanager: encode alerts: %w", err)
	}
	retry, err := notify.PostJSON(ctx, n.client, notify.Request{
		URL: n.endpoint, Header: n.header, Body: b, Secrets: n.secrets,
	})
	if err != nil {
		return retry, fmt.Errorf("alertmanager: post %d alert(s): %w", len(alerts), err)
	}
	return false, nil
}
