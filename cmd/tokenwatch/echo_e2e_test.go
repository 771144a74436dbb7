package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// Canaries of the echoing servers: every credential of the config below,
// and the token the identity provider issues. None has a plain word in it,
// so that any six bytes of one in an output are a leak.
const (
	echoClientID   = "echo-app"
	echoSecret     = "C4NARY-E2E-cl13nt-9a8b7c"
	echoPassword   = "C4NARY-E2E-pw-6d5e4f/+="
	echoAccess     = "C4NARY-E2E-at-5n4o3p2q1r"
	echoAMBearer   = "C4NARY-E2E-am-3g2h1i0j"
	echoHookKey    = "C4NARY-E2E-hm4c-8l7m6n"
	echoHookSecret = "C4NARY-E2E-h00k-5s4t3u"
)

func echoCanaries() []string {
	return []string{echoSecret, echoPassword, echoAccess, echoAMBearer, echoHookKey, echoHookSecret,
		base64.StdEncoding.EncodeToString([]byte(echoClientID + ":" + echoSecret))}
}

// echoForms is every way the servers below send v back: as is, in both
// cases, base64, URL-encoded and cut short, after control sequences that
// would clear a terminal, set its title and forge a verdict line.
func echoForms(vals ...string) string {
	var b strings.Builder
	b.WriteString("\x1b[2J\x1b[H\x1b]0;owned\x07\nverdict: HEALTHY\n")
	for _, v := range vals {
		if len(v) < 12 {
			continue
		}
		fmt.Fprintf(&b, "%s | %s | %s | %s | %s | %s... ; ", v, strings.ToUpper(v), strings.ToLower(v),
			base64.StdEncoding.EncodeToString([]byte(v)), url.QueryEscape(v), v[:12])
	}
	return b.String()
}

// requestSecrets are the credentials a request carried.
func requestSecrets(r *http.Request) []string {
	r.ParseForm()
	var vals []string
	for _, k := range []string{"client_secret", "password", "token"} {
		if v := r.PostForm.Get(k); v != "" {
			vals = append(vals, v)
		}
	}
	if _, secret, ok := r.BasicAuth(); ok {
		vals = append(vals, secret, r.Header.Get("Authorization"))
	}
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		vals = append(vals, a, strings.TrimPrefix(a, "Bearer "))
	}
	return vals
}

// echoIDP is an OAuth server that refuses the password grant, grants
// client_credentials, and puts every credential it is sent back in its
// answers: error descriptions cut by the check, headers, bodies, token and
// introspection members.
func echoIDP(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		echo := echoForms(requestSecrets(r)...)
		if r.PostForm.Get("grant_type") == "password" {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+strings.ReplaceAll(r.Header.Get("Authorization"), `"`, "")+`"`)
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": strings.Repeat("~", 190) + echo})
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": echoAccess, "token_type": "Bearer", "expires_in": 3600, "scope": echo})
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		echo := echoForms(requestSecrets(r)...)
		writeJSON(w, 200, map[string]any{"active": true, "exp": time.Now().Add(time.Hour).Unix(), "scope": echo, "sub": echo,
			"username": echo, "client_id": echo, "token_type": echo})
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		echo := strings.NewReplacer("\n", " ", "\x1b", "", "\x07", "", `"`, "").Replace(echoForms(requestSecrets(r)...))
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+strings.Repeat("~", 150)+echo+`"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	mux.HandleFunc("/revoke", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, map[string]string{"error": "unsupported_token_type", "error_description": strings.Repeat("~", 190) + echoForms(requestSecrets(r)...)})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// echoReceiver is an Alertmanager or a webhook that refuses every
// notification with an answer that echoes the request's credentials (and
// the webhook's key and path, as a misconfigured proxy could), past the
// notifier's 256-byte cut.
func echoReceiver(t *testing.T, refusals chan<- string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case refusals <- r.URL.Path:
		default:
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, strings.Repeat("x", 240)+r.Header.Get("Authorization")+" "+r.URL.Path+" "+echoForms(echoAMBearer, echoHookKey, echoHookSecret))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The canary test of the whole binary, with servers that echo: an
// identity provider that puts every secret it is sent back in every place
// of its answers, and an Alertmanager and a webhook that refuse alerts with
// the credentials in their error pages. No output shows any form or
// fragment of a credential or token, nor a control character: the daemon's
// logs at debug level, /metrics, /, /api/v1/orgs, /probe, diagnose as text
// and JSON, and check-config.
func TestEchoingServersLeakNothing(t *testing.T) {
	idp := echoIDP(t)
	refusals := make(chan string, 16)
	receiver := echoReceiver(t, refusals)
	f := &fixture{dir: t.TempDir()}
	f.config = filepath.Join(f.dir, "tokenwatch.yml")
	f.secrets = echoCanaries()
	cfg := fmt.Sprintf(`global:
  schedule: "@every 2s"
  timeout: 3s
orgs:
  - name: echo-refused
    provider: generic
    token_url: %[1]s/token
    introspection_url: %[1]s/introspect
    revocation_url: %[1]s/revoke
    userinfo_url: %[1]s/userinfo
    client: {id: %[3]s, secret: '%[4]s', auth_method: client_secret_basic}
    grant: {type: password, username: svc@echo.example, password: '%[5]s'}
  - name: echo-facts
    provider: generic
    token_url: %[1]s/token
    introspection_url: %[1]s/introspect
    revocation_url: %[1]s/revoke
    userinfo_url: %[1]s/userinfo
    client: {id: %[3]s, secret: '%[4]s', auth_method: client_secret_post}
    grant: {type: client_credentials}
alerting:
  failure_threshold: 1
  alertmanagers:
    - url: %[2]s
      bearer_token: '%[6]s'
  webhooks:
    - url: %[2]s/hooks/%[8]s
      secret: '%[7]s'
`, idp.URL, receiver.URL, echoClientID, echoSecret, echoPassword, echoAMBearer, echoHookKey, echoHookSecret)
	if err := os.WriteFile(f.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	outputs := map[string]string{}
	code, out, errOut := runCommand(t, f, "check-config", "--config.file="+f.config)
	if code != 0 {
		t.Fatalf("check-config exited %d: %s%s", code, out, errOut)
	}
	outputs["check-config"] = out + errOut
	code, out, errOut = runCommand(t, f, "diagnose", "--config.file="+f.config)
	if code != exitUnhealthy || !strings.Contains(out, "org echo-refused") || !strings.Contains(out, "org echo-facts") {
		t.Errorf("diagnose exited %d, want 1 with both orgs:\n%s%s", code, out, errOut)
	}
	if regexp.MustCompile(`(?m)^\s*verdict: HEALTHY`).MatchString(out) {
		t.Errorf("an answer forged a verdict line in diagnose:\n%s", out)
	}
	outputs["diagnose text"] = out + errOut
	_, out, errOut = runCommand(t, f, "diagnose", "--config.file="+f.config, "--output=json")
	outputs["diagnose json"] = out + errOut

	d := startDaemon(t, f)
	e2etest.WaitFor(t, 30*time.Second, "both orgs checked and both receivers refusing an alert", func() bool {
		_, metrics := d.get(t, "/metrics")
		return strings.Contains(metrics, `tokenwatch_checks_total{org="echo-refused",outcome="grant_rejected"}`) &&
			strings.Contains(metrics, `tokenwatch_checks_total{org="echo-facts",`) &&
			strings.Contains(d.logs.String(), "destination=webhook/") && strings.Contains(d.logs.String(), "destination=alertmanager/")
	})
	for _, path := range []string{"/metrics", "/", "/api/v1/orgs", "/probe?org=echo-refused", "/probe?org=echo-facts"} {
		_, body := d.get(t, path)
		outputs[path] = html.UnescapeString(body)
	}
	d.stop(t)
	outputs["logs"] = d.logs.String()
	if !strings.Contains(outputs["logs"], "refused the notification") {
		t.Errorf("the logs do not show the refused notifications:\n%.3000s", outputs["logs"])
	}

	for where, text := range outputs {
		if found := echoLeaks(text); len(found) > 0 {
			t.Errorf("%s shows %d pieces of credentials, e.g. %q", where, len(found), found[:min(3, len(found))])
		}
		if strings.ContainsAny(text, "\x1b\x07\u009b") || strings.Contains(text, `\x1b`) || strings.Contains(text, `\u001b`) {
			t.Errorf("%s shows control characters a server sent", where)
		}
	}
}

// echoLeaks lists the pieces of MinFragment (6) bytes of the canaries, as
// is, base64 and URL-encoded, found in text in any letter case.
func echoLeaks(text string) []string {
	lower := strings.ToLower(text)
	var found []string
	for _, s := range echoCanaries() {
		for _, f := range []string{s, base64.StdEncoding.EncodeToString([]byte(s)), url.QueryEscape(s)} {
			for i := 0; i+6 <= len(f); i++ {
				if strings.Contains(lower, strings.ToLower(f[i:i+6])) {
					found = append(found, f[i:i+6])
				}
			}
		}
	}
	return found
}
