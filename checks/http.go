package checks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxBodyBytes bounds every response body read; a larger answer is malformed.
const MaxBodyBytes = 1 << 20

const userAgent = "tokenwatch"

// NewHTTPClient builds the client one org uses for all its checks over rt
// (nil: a transport of its own, proxies from the environment). Redirects
// are never followed for requests that carry credentials in a body (POST),
// and GET redirects are followed only to the same scheme and host, so
// credentials never reach another host.
func NewHTTPClient(rt http.RoundTripper) *http.Client {
	if rt == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 4
		rt = tr
	}
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			first := via[0]
			if first.Method != http.MethodGet || len(via) >= 3 ||
				req.URL.Scheme != first.URL.Scheme || req.URL.Host != first.URL.Host {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// request is one HTTP exchange of a check.
type request struct {
	step   Step
	method string
	url    string
	form   form // nil: no body
	header http.Header
	// sent names what goes out, values withheld except where harmless.
	sent []string
	// credentials marks requests that carry a secret or a token; they are
	// refused over plain http to a non-loopback host.
	credentials bool
}

// response is what came back, body already read (bounded).
type response struct {
	status int
	header http.Header
	body   []byte
	// red redacts what is shown of the answer, before it is cut.
	red *Redactor

	// The body's JSON object, scanned once for all who read it.
	scanned, isObject bool
	obj               jsonObject
	objEnd            int
}

func (r *response) scan() {
	if !r.scanned {
		r.scanned = true
		r.obj, r.objEnd, r.isObject = scanObject(r.body)
	}
}

// object is the answer's JSON object (see the function object).
func (r *response) object() (jsonObject, error) {
	if r.scan(); !r.isObject {
		return jsonObject{}, objectError(r.body)
	}
	return r.obj, nil
}

// oauthError is parseOAuthError(r.body), read from the same scan.
func (r *response) oauthError() *oauthError {
	if r.scan(); !r.isObject || len(bytes.TrimSpace(r.body[r.objEnd:])) > 0 {
		// Not an object (empty, or an error array, say), or not only one: the slow way.
		return redactWith(parseOAuthError(r.body), r.red)
	}
	return redactWith(oauthErrorOf(r.obj), r.red)
}

// classified is an error with the outcome it maps to and a credential-free detail.
type classified struct {
	outcome Outcome
	detail  string
}

func (c *classified) Error() string { return string(c.outcome) + ": " + c.detail }

func classify(o Outcome, format string, args ...any) *classified {
	return &classified{outcome: o, detail: fmt.Sprintf(format, args...)}
}

// do sends one request with a per-request deadline and returns the response
// and the step's timing record. A transport failure comes back as a
// *classified error; HTTP statuses are left to the caller.
func (c *Checker) do(ctx context.Context, rq request) (*response, StepResult, error) {
	ep := c.endpointURL(rq.url)
	sr := StepResult{Step: rq.step, Method: rq.method, URL: ep.display, Sent: rq.sent, Outcome: OutcomeOK}
	u := ep.parsed
	if u == nil || u.Host == "" {
		e := classify(OutcomeInternalError, "endpoint URL %q is not an absolute URL", ep.display)
		sr.Outcome, sr.Detail = e.outcome, e.detail
		return nil, sr, e
	}
	if rq.credentials && u.Scheme == "http" && !ep.loopback {
		e := classify(OutcomeInsecureEndpoint, "refused to send credentials over plain http to %s; use https", u.Host)
		sr.Outcome, sr.Detail = e.outcome, e.detail
		return nil, sr, e
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		e := classify(OutcomeInternalError, "endpoint URL scheme %q is not http or https", u.Scheme)
		sr.Outcome, sr.Detail = e.outcome, e.detail
		return nil, sr, e
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	tr := &phaseTrace{}
	ctx = httptrace.WithClientTrace(ctx, tr.clientTrace())
	var body io.Reader
	if rq.form != nil {
		body = strings.NewReader(rq.form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, rq.url, body)
	if err != nil {
		e := classify(OutcomeInternalError, "building the %s request failed", rq.step)
		sr.Outcome, sr.Detail = e.outcome, e.detail
		return nil, sr, e
	}
	for k, v := range rq.header {
		req.Header[k] = v
	}
	// Shared values, read only: round trippers replace a header's values or
	// append to them (these are full, so append copies), never write into them.
	if rq.form != nil {
		req.Header["Content-Type"] = formContentType
	}
	if len(req.Header["Accept"]) == 0 {
		req.Header["Accept"] = acceptJSON
	}
	req.Header["User-Agent"] = userAgentValue

	start := time.Now()
	tr.start = start
	resp, err := c.client.Do(req)
	if err != nil {
		sr.Duration = time.Since(start)
		sr.Phases = tr.phases(time.Now())
		e := classifyTransport(err)
		sr.Outcome, sr.Detail = e.outcome, e.detail
		return nil, sr, e
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	end := time.Now()
	sr.Duration = end.Sub(start)
	sr.Phases = tr.phases(end)
	sr.Status = resp.StatusCode
	c.noteTLS(resp.TLS)
	if err != nil {
		e := classifyTransport(err)
		sr.Outcome, sr.Detail = e.outcome, "reading the answer: "+e.detail
		return nil, sr, &classified{outcome: e.outcome, detail: sr.Detail}
	}
	if len(data) > MaxBodyBytes {
		e := classify(OutcomeMalformedResponse, "answer body exceeds %d bytes; not read further", MaxBodyBytes)
		sr.Outcome, sr.Detail = e.outcome, e.detail
		return nil, sr, e
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data, red: c.red}, sr, nil
}

// formField is one field of a request's form body.
type formField struct{ key, value string }

// form is a request's form body: a few fields, each key once. It encodes
// as url.Values.Encode would (keys sorted, query-escaped), without a map.
type form []formField

// newForm returns a form of key, value pairs, with room for the client authentication.
func newForm(kv ...string) form {
	f := make(form, 0, 8)
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

// Set sets key to value, replacing a value it had.
func (f *form) Set(key, value string) {
	for i := range *f {
		if (*f)[i].key == key {
			(*f)[i].value = value
			return
		}
	}
	*f = append(*f, formField{key, value})
}

// Get returns key's value, "" when it has none.
func (f form) Get(key string) string {
	for _, x := range f {
		if x.key == key {
			return x.value
		}
	}
	return ""
}

// Encode is the body, as url.Values.Encode encodes the same fields. It
// sorts the fields in place.
func (f form) Encode() string {
	sorted := f
	slices.SortFunc(sorted, func(a, b formField) int { return strings.Compare(a.key, b.key) })
	size := 0
	for _, x := range sorted {
		size += len(x.key) + len(x.value) + 2
	}
	var b strings.Builder
	b.Grow(size + size/8)
	for i, x := range sorted {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(x.key))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(x.value))
	}
	return b.String()
}

var (
	formContentType = []string{"application/x-www-form-urlencoded"}
	acceptJSON      = []string{"application/json"}
	userAgentValue  = []string{userAgent}
)

// readBody reads at most MaxBodyBytes+1 bytes of the answer, into one
// buffer when the server said how long the answer is.
func readBody(resp *http.Response) ([]byte, error) {
	r := io.LimitReader(resp.Body, MaxBodyBytes+1)
	n := resp.ContentLength
	if n < 0 || n > MaxBodyBytes {
		return io.ReadAll(r)
	}
	// One byte more than announced, so a longer answer is still read to
	// the limit and an exact one ends with io.EOF without growing.
	buf := make([]byte, 0, n+1)
	for {
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

// endpoint is an endpoint URL as parsed once for the checker: its requests
// go to a handful of URLs, each checked and shown the same way every time.
type endpoint struct {
	parsed   *url.URL // nil when unparsable
	display  string   // displayURL
	loopback bool     // IsLoopback of the host
}

// maxEndpoints bounds the checker's cache of parsed endpoint URLs.
const maxEndpoints = 16

// endpointURL parses raw once per checker. Checks are serialized, so the
// cache needs no lock.
func (c *Checker) endpointURL(raw string) endpoint {
	if ep, ok := c.urls[raw]; ok {
		return ep
	}
	var ep endpoint
	if u, err := url.Parse(raw); err == nil {
		ep = endpoint{parsed: u, display: displayURL(raw), loopback: IsLoopback(u.Hostname())}
	} else {
		ep.display = displayURL(raw)
	}
	if c.urls == nil || len(c.urls) >= maxEndpoints {
		c.urls = make(map[string]endpoint, 4)
	}
	c.urls[raw] = ep
	return ep
}

// noteTLS keeps the earliest certificate expiry seen during the current check.
func (c *Checker) noteTLS(cs *tls.ConnectionState) {
	if cs == nil {
		return
	}
	for _, cert := range cs.PeerCertificates {
		if c.certExpiry.IsZero() || cert.NotAfter.Before(c.certExpiry) {
			c.certExpiry = cert.NotAfter
		}
	}
}

// phaseTrace records httptrace events of one request, as blackbox_exporter
// does. The transport may call the dial hooks from its own goroutine, even
// after the request ended (a dial it goes on with for its pool), hence the lock.
type phaseTrace struct {
	mu                                                                                 sync.Mutex
	start, dnsStart, dnsDone, connStart, connDone, tlsStart, tlsDone, wrote, firstByte time.Time
	// reused: the request went over a connection already open, so a dial
	// seen meanwhile (started for it, then not needed) is not its own.
	reused bool
}

func (t *phaseTrace) mark(at *time.Time) {
	now := time.Now()
	t.mu.Lock()
	*at = now
	t.mu.Unlock()
}

func (t *phaseTrace) clientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart:          func(httptrace.DNSStartInfo) { t.mark(&t.dnsStart) },
		DNSDone:           func(httptrace.DNSDoneInfo) { t.mark(&t.dnsDone) },
		ConnectStart:      func(string, string) { t.mark(&t.connStart) },
		ConnectDone:       func(string, string, error) { t.mark(&t.connDone) },
		TLSHandshakeStart: func() { t.mark(&t.tlsStart) },
		TLSHandshakeDone:  func(tls.ConnectionState, error) { t.mark(&t.tlsDone) },
		GotConn: func(info httptrace.GotConnInfo) {
			t.mu.Lock()
			t.reused = info.Reused
			t.mu.Unlock()
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { t.mark(&t.wrote) },
		GotFirstResponseByte: func() { t.mark(&t.firstByte) },
	}
}

func span(from, to time.Time) time.Duration {
	if from.IsZero() || to.IsZero() || to.Before(from) {
		return 0
	}
	return to.Sub(from)
}

func (t *phaseTrace) phases(end time.Time) Phases {
	t.mu.Lock()
	defer t.mu.Unlock()
	var p Phases
	if !t.reused {
		p.Resolve = span(t.dnsStart, t.dnsDone)
		p.Connect = span(t.connStart, t.connDone)
		p.TLS = span(t.tlsStart, t.tlsDone)
	}
	if !t.wrote.IsZero() {
		if !t.firstByte.IsZero() {
			p.Processing = span(t.wrote, t.firstByte)
			p.Transfer = span(t.firstByte, end)
		} else {
			p.Processing = span(t.wrote, end)
		}
	}
	return p
}

// classifyTransport maps a client error to an outcome: DNS, connect or timeout, TLS.
func classifyTransport(err error) *classified {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var alertErr tls.AlertError
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return classify(OutcomeDNSError, "host %q not found", dnsErr.Name)
		}
		if dnsErr.IsTimeout {
			return classify(OutcomeDNSError, "resolving %q timed out", dnsErr.Name)
		}
		return classify(OutcomeDNSError, "resolving %q failed", dnsErr.Name)
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		return classify(OutcomeTimeout, "no complete answer within the timeout")
	case errors.Is(err, context.Canceled):
		return classify(OutcomeTimeout, "check cancelled before the answer came")
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return classify(OutcomeTLSError, "certificate verification failed: %s", tlsReason(err))
	case errors.As(err, &recordErr):
		return classify(OutcomeTLSError, "the server did not answer TLS (is it plain http?)")
	case errors.As(err, &alertErr):
		return classify(OutcomeTLSError, "TLS handshake failed: %s", alertErr.Error())
	case errors.Is(err, syscall.ECONNREFUSED):
		return classify(OutcomeConnectError, "connection refused")
	case errors.Is(err, syscall.ECONNRESET):
		return classify(OutcomeConnectError, "connection reset by the server")
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return classify(OutcomeConnectError, "the server closed the connection without a complete answer")
	case strings.Contains(err.Error(), "failed to parse Location header"):
		// net/http reads a redirect's Location before the redirect policy
		// sees it: an unreadable one is still a redirect, not a network
		// failure (and may hold "tls:" or any text).
		return classify(OutcomeRedirect, "answered a redirect whose Location is not a URL; credentials are not forwarded, point the config at the final URL")
	case strings.Contains(err.Error(), "tls:"):
		return classify(OutcomeTLSError, "TLS handshake failed")
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return classify(OutcomeConnectError, "%s failed: %s", opErr.Op, errnoText(opErr.Err))
	}
	return classify(OutcomeConnectError, "request failed: %s", errnoText(err))
}

// tlsReason names the certificate problem without echoing the whole chain.
func tlsReason(err error) string {
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownAuth):
		return "signed by an unknown authority (set tls.ca_file)"
	case errors.As(err, &hostErr):
		return "the certificate is not valid for " + hostErr.Host + " (check the URL or tls.server_name)"
	case errors.As(err, &invalidCert):
		if invalidCert.Reason == x509.Expired {
			return "the certificate has expired or is not yet valid"
		}
		return "the certificate is invalid"
	}
	return "invalid certificate"
}

// errnoText strips the URL from a *url.Error so no query string can leak.
func errnoText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// displayURL drops userinfo, query and fragment before a URL is shown anywhere.
func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	return u.String()
}

// IsLoopback reports whether host is a loopback name or address: localhost,
// a name under .localhost (RFC 6761), 127.0.0.0/8 or ::1. Plain http is
// allowed only to these, since requests carry credentials.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// classifyHTTP covers the answers that mean the same whatever the endpoint:
// redirects, rate limits, HTML pages and 5xx (see docs/outcomes.md).
// It returns nil when the caller should interpret the answer itself.
func classifyHTTP(r *response) *classified {
	switch {
	case r.status >= 300 && r.status < 400:
		loc := r.header.Get("Location")
		if loc == "" {
			return classify(OutcomeRedirect, "answered %d without a Location", r.status)
		}
		return classify(OutcomeRedirect, "answered %d, redirecting to %s; credentials are not forwarded, point the config at the final URL", r.status, displayURL(loc))
	case r.status == http.StatusTooManyRequests:
		return classify(OutcomeRateLimited, "answered 429 Too Many Requests%s", retryAfter(r))
	case isHTML(r):
		return classify(OutcomeProviderDown, "answered %d with an HTML page (%s) instead of JSON", r.status, htmlTitle(r.body, r.red))
	case r.status >= 500:
		if oe := r.oauthError(); oe != nil {
			return classify(OutcomeServerError, "answered %d: %s%s", r.status, oe, retryAfter(r))
		}
		return classify(OutcomeServerError, "answered %d%s", r.status, retryAfter(r))
	}
	return nil
}

func retryAfter(r *response) string {
	if v := r.header.Get("Retry-After"); v != "" {
		return " (Retry-After: " + r.red.Cut(v, 40) + ")"
	}
	return ""
}

func isHTML(r *response) bool {
	// Only a type that names html can be one of the two: JSON answers skip
	// parsing the media type (and its parameters into a map).
	if ct := r.header.Get("Content-Type"); containsFold(ct, "html") {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && (mt == "text/html" || mt == "application/xhtml+xml") {
			return true
		}
	}
	return bytes.HasPrefix(bytes.TrimSpace(r.body), []byte("<"))
}

// containsFold reports whether s contains the lower-case ASCII word, in any case.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(word)], word) {
			return true
		}
	}
	return false
}

// htmlTitle returns the page title, which names maintenance pages well.
func htmlTitle(body []byte, red *Redactor) string {
	lower := bytes.ToLower(body)
	i := bytes.Index(lower, []byte("<title>"))
	if i < 0 {
		return "no title"
	}
	rest := body[i+len("<title>"):]
	j := bytes.Index(bytes.ToLower(rest), []byte("</title>"))
	if j < 0 {
		return "no title"
	}
	return fmt.Sprintf("title %q", red.Cut(strings.TrimSpace(string(rest[:j])), 80))
}

// maxRetryAfter caps what a Retry-After header can ask for.
const maxRetryAfter = 24 * time.Hour

// retryAfterWait reads a Retry-After header (RFC 9110 §10.2.3: delay-seconds or
// an HTTP date) as a wait from now; zero when absent, unreadable or past.
func retryAfterWait(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
