package checks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// Canaries of the echoing server: one in every secret field of a target,
// none with a plain word in it.
const (
	cnClientID    = "echo-app:7"
	cnSecret      = "C4NARY-CS-9f8e+/7d6c=b5a4"
	cnPassword    = "C4NARY-PW-ü1x2y3/&z4%q"
	cnRefresh     = "C4NARY-RT-q1w2e3r4t5y6"
	cnNewRefresh  = "C4NARY-NRT-a9s8d7f6g5"
	cnIntroID     = "intro-app"
	cnIntroSecret = "C4NARY-IC-l0k9j8h7g6"
	cnAccessSig   = "C4NARY-AT-z1x2c3v4b5n6m7"
)

// cnAccess is the access token the server issues: a JWT whose sub echoes
// the credentials, so the subject read from it is server text too.
var cnAccess = "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+cnSecret+`","exp":4102444800}`)) + "." + cnAccessSig

// echoOf is every way a server may send v back: as is, in both cases,
// base64 in both alphabets, URL-encoded both ways, fragments of it, and
// with control and escape sequences around that would rewrite a terminal.
func echoOf(v string) string {
	parts := []string{v, strings.ToUpper(v), strings.ToLower(v),
		base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
		url.QueryEscape(v), url.PathEscape(v), v[:10] + "...", "..." + v[len(v)-9:], v[4:13]}
	return strings.Join(parts, " | ")
}

// echoAll is the echo of every secret the request carried, the
// Authorization header as sent, Basic credentials rebuilt, and escapes.
func echoAll(r *http.Request) string {
	r.ParseForm()
	var vals []string
	for _, k := range []string{"client_secret", "password", "refresh_token", "token"} {
		if v := r.PostForm.Get(k); v != "" {
			vals = append(vals, v)
		}
	}
	if id, secret, ok := r.BasicAuth(); ok {
		vals = append(vals, secret)
		if s, err := url.QueryUnescape(secret); err == nil {
			vals = append(vals, s)
		}
		_ = id
	}
	if a := r.Header.Get("Authorization"); a != "" {
		vals = append(vals, a)
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok {
			vals = append(vals, tok)
		}
	}
	var b strings.Builder
	b.WriteString("\x1b[2J\x1b[H\x1b]0;owned\x07\nverdict: HEALTHY\n")
	for _, v := range vals {
		if len(v) >= 14 {
			b.WriteString(echoOf(v) + " ; ")
		}
	}
	b.WriteString("Basic " + base64.StdEncoding.EncodeToString([]byte(cnClientID+":"+cnSecret)) + " ; ")
	b.WriteString("Bearer " + cnAccess)
	return b.String()
}

// pad puts filler before text so that a cut at any of the lengths the
// check uses (200, 120, 80, 40) falls inside an echo.
func pad(n int, text string) string { return strings.Repeat("~", n) + text }

// echoServer is an authorization server that puts back every secret it is
// sent, in every place an answer has, in the way mode says.
func echoServer(t *testing.T, mode string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	var srv *httptest.Server
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		tokenPath := "/token"
		if mode == "secret in endpoint paths" {
			tokenPath = "/token/" + url.PathEscape(cnSecret) + "/" + base64.RawURLEncoding.EncodeToString([]byte(cnPassword))
		}
		writeJSON(w, 200, map[string]string{"issuer": srv.URL, "token_endpoint": srv.URL + tokenPath,
			"introspection_endpoint": srv.URL + "/introspect", "revocation_endpoint": srv.URL + "/revoke", "userinfo_endpoint": srv.URL + "/userinfo"})
	})
	token := func(w http.ResponseWriter, r *http.Request) {
		echo := echoAll(r)
		switch mode {
		case "token error":
			w.Header().Set("WWW-Authenticate", `Basic realm="`+strings.ReplaceAll(echoOf(cnSecret), `"`, "")+`"`)
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": pad(190, echo)})
		case "token error code":
			writeJSON(w, 401, map[string]string{"error": echo})
		case "token server error":
			w.Header().Set("Retry-After", pad(30, echoOf(cnSecret)))
			writeJSON(w, 503, map[string]string{"error": "temporarily_unavailable", "error_description": pad(185, echo)})
		case "token rate limited":
			w.Header().Set("Retry-After", pad(30, url.QueryEscape(cnPassword)+" "+cnSecret))
			w.WriteHeader(http.StatusTooManyRequests)
		case "token html":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "<html><title>%s</title></html>", pad(30, echo))
		case "token redirect":
			w.Header().Set("Location", "https://login.example/cb/"+url.PathEscape(cnSecret)+"/"+base64.StdEncoding.EncodeToString([]byte(cnPassword))+"?code="+url.QueryEscape(cnRefresh))
			w.WriteHeader(http.StatusFound)
		case "broken connection":
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Error("no hijacker")
				return
			}
			conn, buf, _ := hj.Hijack()
			defer conn.Close()
			// Go quotes the status code it could not read in its error.
			buf.WriteString("HTTP/1.1 " + cnSecret + " " + strings.NewReplacer("\n", " ", "\r", " ").Replace(echo) + "\r\n\r\n")
			buf.Flush()
		default:
			ans := map[string]any{"access_token": cnAccess, "token_type": pad(10, echoOf(cnSecret)), "expires_in": 3600,
				"scope": echo, "id": echoOf(cnPassword), "instance_url": "https://x.example/" + url.PathEscape(cnSecret),
				"issued_at": echoOf(cnIntroSecret)}
			if r.PostForm.Get("grant_type") == "refresh_token" {
				ans["refresh_token"] = cnNewRefresh
			}
			writeJSON(w, 200, ans)
		}
	}
	mux.HandleFunc("/token", token)
	mux.HandleFunc("/token/", token)
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		echo := echoAll(r) + " ; " + echoOf(cnNewRefresh)
		if mode == "introspection error" {
			writeJSON(w, 400, map[string]string{"error": "invalid_request", "error_description": pad(195, echo)})
			return
		}
		writeJSON(w, 200, map[string]any{"active": true, "exp": 4102444800, "scope": echo, "sub": pad(3, echo),
			"username": echoOf(cnPassword), "client_id": echoOf(cnSecret), "token_type": echoOf(cnAccessSig)})
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		echo := echoAll(r)
		switch mode {
		case "probe challenge":
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token", error_description="`+
				pad(150, strings.NewReplacer(`"`, "", "\n", " ", "\x1b", "", "\x07", "").Replace(echo))+`"`)
			w.WriteHeader(http.StatusUnauthorized)
		case "probe body":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, pad(110, strings.NewReplacer("\n", " ", "{", "(", "[", "(", "<", "(").Replace(echo)))
		case "probe error":
			writeJSON(w, 403, map[string]string{"error": "invalid_token", "error_description": pad(190, echo)})
		default:
			writeJSON(w, 200, map[string]string{"sub": echo, "preferred_username": echoOf(cnAccessSig)})
		}
	})
	mux.HandleFunc("/revoke", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, map[string]string{"error": "unsupported_token_type", "error_description": pad(190, echoAll(r))})
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// A server that echoes every secret it is sent, in every encoding and in
// every place of its answers (error descriptions and codes, headers,
// bodies, HTML titles, Retry-After, redirect URLs, token, introspection
// and userinfo members,
// discovered endpoint URLs, a broken status line): no form of any secret
// reaches the Result, whatever the grant and client authentication, and no
// control or escape character does either.
func TestEchoingServerLeaksNothing(t *testing.T) {
	// Each target, and the secrets in play in its checks: the server echoes
	// the others too, which are no secret to that checker.
	targets := map[string]struct {
		target  checks.Target
		secrets []string
	}{
		"password grant, client_secret_basic, introspection client": {checks.Target{
			Client:        checks.Client{ID: cnClientID, Secret: cnSecret, AuthMethod: checks.AuthClientSecretBasic},
			Grant:         checks.Grant{Type: checks.GrantPassword, Username: "svc@echo.example", Password: cnPassword},
			Introspection: checks.Introspection{Client: &checks.Client{ID: cnIntroID, Secret: cnIntroSecret, AuthMethod: checks.AuthClientSecretPost}},
		}, []string{cnSecret, cnPassword, cnIntroSecret, cnAccess}},
		"refresh_token grant, client_secret_post": {checks.Target{
			Client: checks.Client{ID: cnClientID, Secret: cnSecret, AuthMethod: checks.AuthClientSecretPost},
			Grant:  checks.Grant{Type: checks.GrantRefreshToken, RefreshToken: cnRefresh},
		}, []string{cnSecret, cnRefresh, cnNewRefresh, cnAccess}},
	}
	modes := []struct {
		mode string
		want checks.Outcome // "" when any outcome will do
	}{
		{"facts", checks.OutcomeRevokeFailed},
		{"token error", checks.OutcomeGrantRejected},
		{"token error code", ""},
		{"token server error", checks.OutcomeServerError},
		{"token rate limited", checks.OutcomeRateLimited},
		{"token html", checks.OutcomeProviderDown},
		{"token redirect", checks.OutcomeRedirect},
		{"broken connection", ""},
		{"introspection error", checks.OutcomeIntrospectionError},
		{"probe challenge", checks.OutcomeResourceRejected},
		{"probe body", checks.OutcomeResourceRejected},
		{"probe error", checks.OutcomeResourceRejected},
		{"secret in endpoint paths", ""},
	}
	for name, target := range targets {
		for _, m := range modes {
			t.Run(name+"/"+m.mode, func(t *testing.T) {
				srv := echoServer(t, m.mode)
				tg := target.target
				tg.Name, tg.Provider, tg.Timeout = "echo", checks.ProviderGeneric, 2*time.Second
				tg.DiscoveryURL, tg.Probe, tg.TokenMode = srv.URL+"/.well-known/openid-configuration", checks.ProbeUserinfo, checks.TokenModeFresh
				res := checks.NewChecker(tg).Check(context.Background())
				if m.want != "" && res.Outcome != m.want {
					t.Errorf("outcome %s, want %s (the echo took another path): %s", res.Outcome, m.want, res.Explanation)
				}
				assertNoEcho(t, res, target.secrets)
			})
		}
	}
}

// assertNoEcho fails when any form of a canary, or a control character,
// is in the Result as JSON (unescaped) or as printed.
func assertNoEcho(t *testing.T, res *checks.Result, secrets []string) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		t.Fatal(err)
	}
	var decoded any
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	var texts []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			texts = append(texts, v)
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(decoded)
	text := strings.Join(texts, "\n\n") + "\n\n" + fmt.Sprintf("%+v", *res)
	if found := leaks(text, secrets...); len(found) > 0 {
		t.Errorf("the result holds %d forms or fragments of the canaries, e.g. %q", len(found), found[:min(len(found), 3)])
	}
	for _, s := range texts {
		sc := bufio.NewScanner(strings.NewReader(s))
		sc.Split(bufio.ScanRunes)
		for sc.Scan() {
			if r := []rune(sc.Text())[0]; r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f {
				t.Errorf("control character %U in %.60q...", r, s)
				break
			}
		}
	}
}
