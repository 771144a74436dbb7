package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxErrorBody bounds how much of an error answer goes into the error.
const maxErrorBody = 256

// NewHTTPClient returns the client of one destination: its own TLS
// settings (nil: defaults), a timeout per request, keep-alive, and no
// redirects, which would carry the Authorization header elsewhere.
func NewHTTPClient(tlsConfig *tls.Config, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
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
		return true, fmt.Errorf("send: %w", stripURL(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if text := redact(strings.TrimSpace(string(body)), r.Secrets); text != "" {
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

func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "<secret>")
		}
	}
	// Keep the error on one line in logs.
	return strings.Join(strings.Fields(s), " ")
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
// info, normalized as in NormalizeURL), e.g.
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
	sum := sha256.Sum256([]byte(NormalizeURL(u)))
	return kind + "/" + strings.ToLower(u.Host) + "/" + hex.EncodeToString(sum[:4])
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

// ParseURL reads a destination's URL, which must be absolute http(s); kind
// names the destination in the error.
func ParseURL(kind, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New(kind + ": the URL must be an absolute http(s) URL")
	}
	return u, nil
}
