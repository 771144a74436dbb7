package orgsim

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Endpoint names a group of the org's paths, for faults and request counts.
type Endpoint string

// The endpoints. EndpointResource covers /services/data/... and the identity
// URL; EndpointDiscovery covers the discovery document and /id/keys.
const (
	EndpointToken      Endpoint = "token"
	EndpointIntrospect Endpoint = "introspect"
	EndpointRevoke     Endpoint = "revoke"
	EndpointUserinfo   Endpoint = "userinfo"
	EndpointResource   Endpoint = "resource"
	EndpointDiscovery  Endpoint = "discovery"
	// EndpointAll applies a fault to every endpoint that has none of its own.
	EndpointAll Endpoint = "all"
)

// Fault is a misbehaviour injected before normal handling. Latency and
// Hold come first; then the first that is set of Hangup, Redirect, Status
// and HTML replaces the answer; otherwise Truncate, BadSignature and
// DateSkew alter the normal answer.
type Fault struct {
	// Latency is added before answering; a cancelled request stops waiting and gets no answer.
	Latency time.Duration
	// Hold, when not nil, keeps the request waiting (after Latency) until
	// it is closed, so that a test can act while a request is at the
	// server and see it arrive through Requests. Like Latency, it ends
	// without an answer when the request is cancelled or the org closed.
	Hold <-chan struct{}
	// Status, when not 0, is answered with Body and ContentType instead of
	// the normal answer. ContentType defaults to JSON when Body starts with
	// { or [, else plain text.
	Status      int
	Body        string
	ContentType string
	// HTML answers 200 text/html "We are down for maintenance" page.
	HTML bool
	// Truncate cuts the normal answer in half (Content-Length says the half).
	Truncate bool
	// Hangup closes the connection without answering.
	Hangup bool
	// Redirect answers 307 with this Location.
	Redirect string
	// BadSignature makes the token endpoint send a wrong `signature`.
	BadSignature bool
	// DateSkew shifts the HTTP Date header (clock skew).
	DateSkew time.Duration
	// Remaining applies the fault to the next N requests only; 0 = until cleared.
	Remaining int
}

// SetFault injects f into the endpoint, replacing its previous fault. A
// fault set on an endpoint takes precedence over one set on EndpointAll.
func (o *Org) SetFault(endpoint Endpoint, f Fault) {
	o.faultMu.Lock()
	defer o.faultMu.Unlock()
	o.faults[endpoint] = &f
}

// ClearFaults removes every fault.
func (o *Org) ClearFaults() {
	o.faultMu.Lock()
	defer o.faultMu.Unlock()
	clear(o.faults)
}

// takeFault returns the fault that applies to this request, counting down Remaining.
func (o *Org) takeFault(e Endpoint) (Fault, bool) {
	o.faultMu.Lock()
	defer o.faultMu.Unlock()
	key := e
	f := o.faults[key]
	if f == nil {
		key = EndpointAll
		f = o.faults[key]
	}
	if f == nil {
		return Fault{}, false
	}
	got := *f
	if f.Remaining > 0 {
		f.Remaining--
		if f.Remaining == 0 {
			delete(o.faults, key)
		}
	}
	return got, true
}

type faultKey struct{}

// faultFrom returns the fault applied to the request, for the handlers that alter their answer.
func faultFrom(ctx context.Context) Fault {
	f, _ := ctx.Value(faultKey{}).(Fault)
	return f
}

const maintenancePage = `<!DOCTYPE html>
<html><head><title>Down for Maintenance</title></head>
<body><h1>We are down for maintenance</h1>
<p>Sorry for the inconvenience. We'll be back shortly.</p></body></html>
`

// endpoint wraps a handler with request counting, the Date header and faults.
func (o *Org) endpoint(e Endpoint, h http.HandlerFunc) http.Handler {
	counter := o.counters[e]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		counter.Add(1)
		f, faulted := o.takeFault(e)
		w.Header().Set("Date", o.clock().Add(f.DateSkew).UTC().Format(http.TimeFormat))
		if !faulted {
			h(w, r)
			return
		}
		if !o.wait(r.Context(), f) {
			return
		}
		switch {
		case f.Hangup:
			hangUp(w)
		case f.Redirect != "":
			w.Header().Set("Location", f.Redirect)
			w.WriteHeader(http.StatusTemporaryRedirect)
		case f.Status != 0:
			ct := f.ContentType
			if ct == "" {
				ct = "text/plain; charset=utf-8"
				if b := bytes.TrimSpace([]byte(f.Body)); len(b) > 0 && (b[0] == '{' || b[0] == '[') {
					ct = jsonContentType
				}
			}
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(f.Status)
			_, _ = io.WriteString(w, f.Body)
		case f.HTML:
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			_, _ = io.WriteString(w, maintenancePage)
		case f.Truncate:
			rec := &answer{header: http.Header{}, code: http.StatusOK}
			h(rec, r.WithContext(context.WithValue(r.Context(), faultKey{}, f)))
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			body := rec.body.Bytes()
			body = body[:len(body)/2]
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.code)
			_, _ = w.Write(body)
		default:
			h(w, r.WithContext(context.WithValue(r.Context(), faultKey{}, f)))
		}
	})
}

// wait holds a faulted request for its Latency, then until its Hold is
// closed. It reports false when the request was cancelled or the org closed
// first: then the request gets no answer.
func (o *Org) wait(ctx context.Context, f Fault) bool {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-o.done:
			return false
		}
	}
	if f.Hold != nil {
		select {
		case <-f.Hold:
		case <-ctx.Done():
			return false
		case <-o.done:
			return false
		}
	}
	return true
}

// answer keeps a handler's answer so that a fault can cut it before it is sent.
type answer struct {
	header      http.Header
	code        int
	wroteHeader bool
	body        bytes.Buffer
}

func (a *answer) Header() http.Header { return a.header }

func (a *answer) WriteHeader(code int) {
	if !a.wroteHeader {
		a.code, a.wroteHeader = code, true
	}
}

func (a *answer) Write(p []byte) (int, error) {
	a.wroteHeader = true
	return a.body.Write(p)
}

// hangUp closes the connection under the request without a response.
func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// HTTP/2 cannot hijack; aborting the handler resets the stream instead.
	panic(http.ErrAbortHandler)
}

func (o *Org) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/services/oauth2/token", o.endpoint(EndpointToken, o.serveToken))
	mux.Handle("/services/oauth2/introspect", o.endpoint(EndpointIntrospect, o.serveIntrospect))
	mux.Handle("/services/oauth2/revoke", o.endpoint(EndpointRevoke, o.serveRevoke))
	mux.Handle("/services/oauth2/userinfo", o.endpoint(EndpointUserinfo, o.serveUserinfo))
	mux.Handle("/services/data/", o.endpoint(EndpointResource, o.serveData))
	mux.Handle("/id/{org}/{user}", o.endpoint(EndpointResource, o.serveIdentity))
	mux.Handle("/id/keys", o.endpoint(EndpointDiscovery, o.serveKeys))
	mux.Handle("/.well-known/openid-configuration", o.endpoint(EndpointDiscovery, o.serveDiscovery))
	// RFC 8414 metadata is deliberately absent: Salesforce answers 404 there.
	return mux
}
