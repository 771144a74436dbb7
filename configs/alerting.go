package configs

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// Defaults of the alerting section.
const (
	DefaultFailureThreshold = 2
	DefaultSuccessThreshold = 1
	DefaultResendInterval   = time.Minute
	// DefaultExpiresSoonThreshold is short on purpose: a healthy reused
	// Salesforce session slides and keeps more than half its timeout (an
	// hour of a default two-hour session) ahead of it, so only a token
	// about to run out comes this close.
	DefaultExpiresSoonThreshold = 10 * time.Minute
	DefaultNotificationTimeout  = 10 * time.Second
	// DefaultSigningCertificateThreshold is how long before grant.certificate_file
	// expires TokenSigningCertificateExpiresSoon fires: time to make, upload
	// and configure a new certificate.
	DefaultSigningCertificateThreshold = 30 * 24 * time.Hour
	// MinResendInterval keeps a typo such as "1ms" from flooding Alertmanager.
	MinResendInterval = time.Second
)

// Alerting is how the agent raises its own alerts: the thresholds of the
// per-org state machine and where notifications go.
type Alerting struct {
	// FailureThreshold is the number of consecutive bad checks before an alert fires.
	FailureThreshold int
	// SuccessThreshold is the number of consecutive good checks before it resolves.
	SuccessThreshold int
	// ResendInterval is how often firing alerts are sent again to Alertmanager.
	ResendInterval time.Duration
	// ExpiresSoonThreshold raises TokenExpiresSoon for a kept token
	// (token_mode reuse) whose exp is closer than this; 0 turns it off.
	ExpiresSoonThreshold time.Duration
	// SigningCertificateThreshold raises TokenSigningCertificateExpiresSoon
	// when grant.certificate_file expires within it; 0 turns it off.
	SigningCertificateThreshold time.Duration
	Alertmanagers               []Alertmanager
	Webhooks                    []Webhook
}

// Alertmanager is one Alertmanager (API v2) that receives every alert.
type Alertmanager struct {
	// URL is the base URL; alerts go to URL + /api/v2/alerts.
	URL string
	// HTTPClient holds its basic_auth or bearer token, tls and proxy, as
	// prometheus/common has them (password and token files are re-read).
	HTTPClient promconfig.HTTPClientConfig
	Timeout    time.Duration
}

// Webhook is an HTTP endpoint that receives alerts in the shape of
// Alertmanager's webhook payload.
type Webhook struct {
	URL string
	// Secret keys the HMAC-SHA256 signature of the body; no signature when empty.
	Secret       checks.Secret
	SecretFile   string
	SendResolved bool
	// HTTPClient holds its tls and proxy settings.
	HTTPClient promconfig.HTTPClientConfig
	Timeout    time.Duration
}

func (r *reader) alerting(s *section) Alerting {
	a := Alerting{
		FailureThreshold:     DefaultFailureThreshold,
		SuccessThreshold:     DefaultSuccessThreshold,
		ResendInterval:       DefaultResendInterval,
		ExpiresSoonThreshold: DefaultExpiresSoonThreshold,

		SigningCertificateThreshold: DefaultSigningCertificateThreshold,
	}
	if n, ok := s.integer("failure_threshold"); ok {
		a.FailureThreshold = n
		if n < 1 {
			r.probs.add(s.key("failure_threshold"), "must be at least 1, got %d", n)
		}
	}
	if n, ok := s.integer("success_threshold"); ok {
		a.SuccessThreshold = n
		if n < 1 {
			r.probs.add(s.key("success_threshold"), "must be at least 1, got %d", n)
		}
	}
	if d, ok := s.duration("resend_interval"); ok {
		a.ResendInterval = d
		if d < MinResendInterval {
			r.probs.add(s.key("resend_interval"), "must be at least %s, got %s", MinResendInterval, d)
		}
	}
	if d, ok := s.duration("expires_soon_threshold"); ok {
		a.ExpiresSoonThreshold = d
		if d < 0 {
			r.probs.add(s.key("expires_soon_threshold"), "must not be negative (0s turns TokenExpiresSoon off), got %s", d)
		}
	}
	if v := s.str("signing_certificate_threshold"); v != "" {
		// Prometheus units, so that 30d can be written as such.
		d, err := model.ParseDuration(v)
		if err != nil {
			r.probs.add(s.key("signing_certificate_threshold"), "invalid duration %q (e.g. 30d, 720h; 0s turns TokenSigningCertificateExpiresSoon off)", v)
		} else {
			a.SigningCertificateThreshold = time.Duration(d)
		}
	}
	// Each destination is named by its URL; the same URL twice would get
	// every notification twice.
	urls := map[string]string{}
	r.destinations(s, "alertmanagers", func(ds *section) {
		am := r.alertmanager(ds)
		r.checkDuplicateDestination(ds.key("url"), am.URL, urls)
		a.Alertmanagers = append(a.Alertmanagers, am)
	})
	r.destinations(s, "webhooks", func(ds *section) {
		wh := r.webhook(ds)
		r.checkDuplicateDestination(ds.key("url"), wh.URL, urls)
		a.Webhooks = append(a.Webhooks, wh)
	})
	s.done()
	return a
}

func (r *reader) checkDuplicateDestination(path, u string, seen map[string]string) {
	if u == "" {
		return
	}
	key := destinationKey(u)
	if first, dup := seen[key]; dup {
		r.probs.add(path, "the same URL as %s; each destination would get every notification twice", first)
		return
	}
	seen[key] = path
}

// destinations reads the list under key, handing each filled-in entry to read.
func (r *reader) destinations(s *section, key string, read func(ds *section)) {
	items, ok := s.list(key)
	if !ok {
		return
	}
	for i, item := range items {
		ds := newSection(&r.probs, fmt.Sprintf("%s[%d]", s.key(key), i), item)
		if !ds.present {
			if item == nil {
				r.probs.add(ds.path, "empty entry (remove the dash or fill it in)")
			}
			continue
		}
		read(ds)
	}
}

// destinationKey is the URL as destinations are told apart (see
// alerting.NormalizeURL), so http://127.0.0.1:9093 and HTTP://127.0.0.1:9093/
// are one destination.
func destinationKey(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw // reported by checkDestinationURL
	}
	return alerting.NormalizeURL(u)
}

func (r *reader) alertmanager(s *section) Alertmanager {
	am := Alertmanager{URL: s.str("url"), Timeout: DefaultNotificationTimeout,
		HTTPClient: promconfig.HTTPClientConfig{EnableHTTP2: true}}
	token, tokenFile, hasBearer := r.secret(s, "bearer_token", "bearer_token_file")
	if hasBearer {
		am.HTTPClient.Authorization = &promconfig.Authorization{Type: "Bearer"}
		if tokenFile != "" {
			// Read again at every request, so a rotated token needs no reload.
			am.HTTPClient.Authorization.CredentialsFile = tokenFile
		} else {
			am.HTTPClient.Authorization.Credentials = promconfig.Secret(token.Reveal())
		}
	}
	hasBasic := false
	if bs := s.sub("basic_auth"); bs.present {
		am.HTTPClient.BasicAuth = r.basicAuth(bs)
		hasBasic = true
		if hasBearer {
			r.probs.add(s.key("bearer_token"), "set either basic_auth or bearer_token, not both (one Authorization header)")
		}
	}
	am.HTTPClient.TLSConfig = r.tlsConfig(s.sub("tls"))
	am.HTTPClient.ProxyConfig = r.proxy(s)
	am.Timeout = r.notificationTimeout(s)
	s.done()
	r.checkDestinationURL(s.key("url"), am.URL, hasBasic || hasBearer,
		"the Alertmanager base URL, e.g. http://127.0.0.1:9093")
	return am
}

func (r *reader) basicAuth(s *section) *promconfig.BasicAuth {
	b := &promconfig.BasicAuth{Username: s.str("username")}
	password, file, hasPassword := r.secret(s, "password", "password_file")
	if file != "" {
		b.PasswordFile = file
	} else {
		b.Password = promconfig.Secret(password.Reveal())
	}
	s.done()
	if b.Username == "" {
		r.probs.add(s.key("username"), "required with basic_auth")
	}
	if !hasPassword {
		r.probs.add(s.key("password"), "required with basic_auth (set password, password: ${ENV_VAR} or password_file)")
	}
	return b
}

func (r *reader) webhook(s *section) Webhook {
	wh := Webhook{URL: s.str("url"), SendResolved: true, Timeout: DefaultNotificationTimeout,
		HTTPClient: promconfig.HTTPClientConfig{EnableHTTP2: true}}
	wh.Secret, wh.SecretFile, _ = r.secret(s, "secret", "secret_file")
	if b, ok := s.boolean("send_resolved"); ok {
		wh.SendResolved = b
	}
	wh.HTTPClient.TLSConfig = r.tlsConfig(s.sub("tls"))
	wh.HTTPClient.ProxyConfig = r.proxy(s)
	wh.Timeout = r.notificationTimeout(s)
	s.done()
	// The HMAC key itself never travels, only the signature: plain http
	// is allowed, as Alertmanager allows it for its webhooks.
	r.checkDestinationURL(s.key("url"), wh.URL, false, "the URL that receives the alerts, e.g. https://hooks.example.com/tokenwatch")
	return wh
}

func (r *reader) notificationTimeout(s *section) time.Duration {
	d, ok := s.duration("timeout")
	if !ok {
		return DefaultNotificationTimeout
	}
	checkTimeout(&r.probs, s.key("timeout"), d)
	return d
}

// checkDestinationURL accepts absolute http(s) URLs. A destination that
// carries credentials (basic auth, a bearer token) gets plain http only on
// loopback, like the orgs' endpoints.
func (r *reader) checkDestinationURL(path, raw string, credentials bool, example string) {
	if raw == "" {
		if !r.probs.has(path) {
			r.probs.add(path, "required (%s)", example)
		}
		return
	}
	u := r.absoluteURL(path, raw, "use basic_auth", " ("+example+")")
	if u == nil {
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if credentials && !checks.IsLoopback(u.Hostname()) {
			r.probs.add(path, "plain http is allowed only to loopback hosts (localhost, 127.0.0.0/8, ::1) when basic_auth or a bearer token is sent; use https")
		}
	default:
		r.probs.add(path, "the scheme is not allowed; use https or http")
	}
}
