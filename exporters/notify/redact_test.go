package notify_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/exporters/alertmanager"
	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/exporters/webhook"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// Canaries of the destinations' credentials, none with a plain word in it.
const (
	ntBearer   = "C4NARY-BE4RER-7h6g5f4e3d2c1b"
	ntUser     = "tokenwatch"
	ntPassword = "C4NARY-P4SS-9z8y7x6w/+="
	ntHMACKey  = "C4NARY-HM4C-1q2w3e4r5t"
)

// echoBody is an error answer that puts the request's credentials back,
// after filler that makes the notifier's 256-byte cut fall inside them, in
// several encodings, with escape sequences that would rewrite a terminal.
func echoBody(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	_, cred, _ := strings.Cut(auth, " ")
	var b strings.Builder
	b.WriteString(strings.Repeat("x", 240))
	b.WriteString(auth + " | ")
	b.WriteString("\x1b]0;owned\x07\x1b[2J\nlevel=ERROR msg=forged\n")
	for _, v := range []string{cred, ntPassword, ntBearer, ntHMACKey} {
		b.WriteString(v + " " + strings.ToLower(v) + " " + url.QueryEscape(v) + " " + base64.StdEncoding.EncodeToString([]byte(v)) + " " + v[:11] + "... | ")
	}
	b.WriteString("Bearer someone-elses-token-0a9b8c7d6e")
	return b.String()
}

// notifierLeaks lists what of the canaries (and the foreign bearer token)
// is in text: each canary, its forms, and every 6-byte piece of them.
func notifierLeaks(text string) []string {
	lower := strings.ToLower(text)
	var found []string
	basic := base64.StdEncoding.EncodeToString([]byte(ntUser + ":" + ntPassword))
	for _, s := range []string{ntBearer, ntPassword, ntHMACKey, basic, "someone-elses-token-0a9b8c7d6e"} {
		for _, f := range []string{s, url.QueryEscape(s), base64.StdEncoding.EncodeToString([]byte(s))} {
			for i := 0; i+6 <= len(f); i++ {
				if strings.Contains(lower, strings.ToLower(f[i:i+6])) {
					found = append(found, f[i:i+6])
				}
			}
		}
	}
	return found
}

// Alertmanager and webhook answers that echo the credentials sent, cut at
// 256 bytes inside a "Bearer <token>": the error holds no piece of a
// credential and no control character, whatever the answer and status.
func TestPostJSONErrorsHoldNoCredential(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusBadRequest
		if strings.HasSuffix(r.URL.Path, "/busy") {
			status = http.StatusServiceUnavailable
		}
		w.WriteHeader(status)
		w.Write([]byte(echoBody(r)))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		cfg  promconfig.HTTPClientConfig
		path string
	}{
		{"bearer, refused", promconfig.HTTPClientConfig{Authorization: &promconfig.Authorization{Type: "Bearer", Credentials: ntBearer}}, "/hook"},
		{"bearer, retried", promconfig.HTTPClientConfig{Authorization: &promconfig.Authorization{Type: "Bearer", Credentials: ntBearer}}, "/busy"},
		{"basic auth", promconfig.HTTPClientConfig{BasicAuth: &promconfig.BasicAuth{Username: ntUser, Password: ntPassword}}, "/hook"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, secrets, err := notify.NewHTTPClient(tc.cfg, "test", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, err = notify.PostJSON(context.Background(), client, notify.Request{URL: srv.URL + tc.path, Body: []byte("[]"),
				Secrets: append(secrets, ntBearer, ntPassword, ntHMACKey)})
			if err == nil {
				t.Fatal("an error answer was accepted")
			}
			msg := err.Error()
			if found := notifierLeaks(msg); len(found) > 0 {
				t.Errorf("the error holds %q: %s", found, msg)
			}
			if strings.ContainsAny(msg, "\x1b\x07\n\r") {
				t.Errorf("the error holds control characters: %q", msg)
			}
			if !strings.Contains(msg, "<redacted>") || !strings.HasPrefix(msg, "HTTP ") {
				t.Errorf("error = %q, want the answer, redacted", msg)
			}
		})
	}
}

// The same answers through the Router, whose log is what an operator
// reads: the refusal is logged at ERROR, the retry at WARN and then DEBUG.
// No line of it holds a piece of a credential, for either destination kind.
func TestRouterLogsNoCredential(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusBadRequest
		if strings.Contains(r.URL.Path, "busy") {
			status = http.StatusServiceUnavailable
		}
		w.WriteHeader(status)
		w.Write([]byte(echoBody(r)))
	}))
	defer srv.Close()
	bearer := promconfig.HTTPClientConfig{Authorization: &promconfig.Authorization{Type: "Bearer", Credentials: ntBearer}}
	basic := promconfig.HTTPClientConfig{BasicAuth: &promconfig.BasicAuth{Username: ntUser, Password: ntPassword}}
	am, err := alertmanager.New(alertmanager.Options{URL: srv.URL, HTTPClient: bearer})
	if err != nil {
		t.Fatal(err)
	}
	amBusy, err := alertmanager.New(alertmanager.Options{URL: srv.URL + "/busy", HTTPClient: basic})
	if err != nil {
		t.Fatal(err)
	}
	hook, err := webhook.New(webhook.Options{URL: srv.URL + "/hook", Secret: ntHMACKey, HTTPClient: basic})
	if err != nil {
		t.Fatal(err)
	}
	logs := &recordingHandler{records: make(chan string, 64)}
	r := notify.NewRouter(notify.RouterOptions{Logger: slog.New(logs), MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	defer func() {
		// The busy destination never drains its queue: do not wait for it.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		r.Stop(ctx)
	}()
	r.Update([]notify.Destination{{Name: "am", Notifier: am}, {Name: "am-busy", Notifier: amBusy}, {Name: "hook", Notifier: hook}})
	r.Send(alerting.Message{Alert: alerting.Alert{Status: alerting.StatusFiring, Labels: map[string]string{"alertname": "A", "org": "acme"},
		StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour), Fingerprint: "f1"}})
	var errors, retries int
	deadline := time.After(10 * time.Second)
	for errors < 2 || retries < 2 {
		select {
		case line := <-logs.records:
			switch {
			case strings.HasPrefix(line, "level=ERROR"):
				errors++
			case strings.Contains(line, "busy") || strings.Contains(line, "retry"), strings.HasPrefix(line, "level=DEBUG"):
				retries++
			}
			t.Log(line)
			if found := notifierLeaks(line); len(found) > 0 {
				t.Errorf("a log line holds %q: %s", found, line)
			}
			// The text handler quotes control characters: look for them quoted too.
			if strings.ContainsAny(line, "\x1b\x07") || strings.Contains(line, `\x1b`) || strings.Contains(line, `\a`) || strings.Count(line, "\n") > 1 {
				t.Errorf("a log line holds control characters: %q", line)
			}
		case <-deadline:
			t.Fatalf("saw %d refusals and %d retries in the log, want 2 and 2", errors, retries)
		}
	}
}

// recordingHandler sends each log record, as text, on records.
type recordingHandler struct {
	mu      sync.Mutex
	attrs   []slog.Attr
	records chan string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(ctx context.Context, rec slog.Record) error {
	var buf bytes.Buffer
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	h.mu.Lock()
	attrs := h.attrs
	h.mu.Unlock()
	if err := th.WithAttrs(attrs).Handle(ctx, rec); err != nil {
		return err
	}
	select {
	case h.records <- strings.SplitN(buf.String(), " ", 2)[1]: // without time=
	default:
	}
	return nil
}

func (h *recordingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h.mu.Lock()
	defer h.mu.Unlock()
	return &recordingHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...), records: h.records}
}

func (h *recordingHandler) WithGroup(string) slog.Handler { return h }
