package notify

import (
	"encoding/base64"
	"os"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// maxErrorBody bounds how much of an error answer goes into the error; the
// answer is redacted before it is cut, from its first maxErrorRead bytes.
const (
	maxErrorBody = 256
	maxErrorRead = 4 << 10
)

// NewHTTPClient returns the client of one destination from its HTTP client
// settings (prometheus/common: basic auth, authorization, TLS, proxy; files
// re-read when they change), with a timeout per request, keep-alive, and no
// redirects, which would carry the Authorization header elsewhere. It also
// returns the credential values that must never appear in an error.
func NewHTTPClient(cfg promconfig.HTTPClientConfig, name string, timeout time.Duration) (*http.Client, []string, error) {
	cfg.FollowRedirects = false
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	client, err := promconfig.NewClientFromConfig(cfg, name)
	if err != nil {
		return nil, nil, err
	}
	client.Timeout = timeout
	return client, credentials(cfg), nil
}

// credentials lists the secret values of cfg, read from their files too.
func credentials(cfg promconfig.HTTPClientConfig) []string {
	var out []string
	add := func(v promconfig.Secret, file string) {
		if v != "" {
			out = append(out, string(v))
		}
		if file != "" {
			if b, err := os.ReadFile(file); err == nil {
				out = append(out, strings.TrimSpace(string(b)))
			}
		}
	}
	if b := cfg.BasicAuth; b != nil {
		n := len(out)
		add(b.Password, b.PasswordFile)
		// The Authorization header as sent, should an answer echo it.
		for _, pw := range out[n:] {
			out = append(out, base64.StdEncoding.EncodeToString([]byte(b.Username+":"+pw)))
		}
	}
	if a := cfg.Authorization; a != nil {
		add(a.Credentials, a.CredentialsFile)
	}
	add(cfg.BearerToken, cfg.BearerTokenFile)
	for _, vs := range cfg.ProxyConnectHeader {
		for _, v := range vs {
			add(v, "")
		}
	}
	return out
}

// Request is one POST of a JSON body to a destination.
type Request struct {
	URL    string
	Header http.Header
	Body   []byte
	// Secrets are values that must not appear in an error, e.g. a password a
	// misbehaving server echoes back.
	Secrets []string
}

// PostJSON sends the request and classifies the answer: 2xx is success;
// 429, 5xx and network errors are worth a retry; anything else (a 4xx
// refusal, a redirect) is not. Errors never hold the URL, which may carry a
// token in its path, nor a secret.
func PostJSON(ctx context.Context, client *http.Client, r Request) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return false, fmt.Errorf("build request: %w", stripURL(err))
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		// A transport error may quote what the server sent (a malformed status line).
		return true, errors.New("send: " + redact(stripURL(err).Error(), r.Secrets, maxErrorBody))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorRead))
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if text := redact(strings.TrimSpace(string(body)), r.Secrets, maxErrorBody); text != "" {
		msg += ": " + text
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode/100 == 5:
		return true, errors.New(msg)
	default:
		return false, errors.New(msg)
	}
}

// stripURL drops the URL that url.Error repeats.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("timeout: %w", ue.Err)
		}
		return ue.Err
	}
	return err
}

// redact is checks' redaction of s (secrets in every form and fragment,
// Bearer and Basic credentials, control characters), cut to n bytes after
// it is redacted, on one line.
func redact(s string, secrets []string, n int) string {
	return strings.Join(strings.Fields(checks.NewRedactor(secrets...).Cut(s, n)), " ")
}

// URLSecrets returns the parts of a destination URL that must not appear in
// an error: its path and query (a webhook URL often carries a token there,
// and a receiver's 404 page may echo the path) and the password of its user
// info. A bare "/" is left out: it is no secret and would mangle every error.
func URLSecrets(u *url.URL) []string {
	var out []string
	add := func(s string) {
		if s != "" && s != "/" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	add(u.EscapedPath())
	add(u.Path)
	add(strings.TrimSuffix(u.EscapedPath(), "/"))
	add(u.RawQuery)
	if q, err := url.QueryUnescape(u.RawQuery); err == nil {
		add(q)
	}
	if pw, ok := u.User.Password(); ok {
		add(pw)
	}
	// Longest first, so a path is replaced whole before a part of it is.
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// DestinationName names a destination for metrics and logs: its kind, its
// host, and the first 8 hex digits of the SHA-256 of its URL (without user
// info, normalized as in alerting.NormalizeURL), e.g.
// "webhook/hooks.example.com/1f2e3d4c". The name depends on the URL alone,
// not on the destination's position in the configuration, so a reload that
// removes another destination on the same host leaves it, and its queue,
// alone. It holds no credential, path or query: a webhook URL often carries
// a token in its path.
func DestinationName(kind, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return kind + "/invalid-url"
	}
	sum := sha256.Sum256([]byte(alerting.NormalizeURL(u)))
	return kind + "/" + strings.ToLower(u.Host) + "/" + hex.EncodeToString(sum[:4])
}

// ParseURL reads a destination's URL, which must be absolute http(s); kind
// names the destination in the error.
func ParseURL(kind, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New(kind + ": the URL must be an absolute http(s) URL")
	}
	return u, nil
}
