package checks_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// Canaries of the fuzzed server: one in every secret field of every target
// of FuzzCheck, none with a plain word in it, none with a character JSON
// would escape (the server puts them into its answers as they are).
const (
	fzClientID    = "fz-app:1"
	fzSecret      = "F7ZZ-CS-8e7d+/6c5b=a4z3"
	fzPassword    = "F7ZZ-PW-ö9w8/&v7%u6t5"
	fzRefresh     = "F7ZZ-RT-p0o9i8u7y6t5"
	fzIntroID     = "fz-intro"
	fzIntroSecret = "F7ZZ-IC-m1n2b3v4c5x6"
)

// configuredSecrets are the secrets of t that no text of a Result may hold.
func configuredSecrets(t *checks.Target) []string {
	var out []string
	for _, s := range []checks.Secret{t.Client.Secret, t.Grant.Password, t.Grant.RefreshToken} {
		if s != "" {
			out = append(out, s.Reveal())
		}
	}
	if ic := t.Introspection.Client; ic != nil && ic.Secret != "" {
		out = append(out, ic.Secret.Reveal())
	}
	return out
}

// fuzzAnswer is one endpoint's answer as the fuzz input gives it.
type fuzzAnswer struct {
	status int
	header string // "Name: value" lines
	body   string
}

// echoes are the placeholders a fuzzed answer may hold, replaced by what
// the server was configured with or sent: every secret as is and in every
// encoding the redaction covers, the request body and Authorization header
// as sent, and the token the request carried.
func echoes(r *http.Request, sent string) *strings.Replacer {
	var pairs []string
	for name, v := range map[string]string{"secret": fzSecret, "password": fzPassword, "refresh": fzRefresh, "introsecret": fzIntroSecret} {
		pairs = append(pairs,
			"{{"+name+"}}", v,
			"{{"+name+":upper}}", strings.ToUpper(v),
			"{{"+name+":lower}}", strings.ToLower(v),
			"{{"+name+":b64}}", base64.StdEncoding.EncodeToString([]byte(v)),
			"{{"+name+":b64url}}", base64.RawURLEncoding.EncodeToString([]byte(v)),
			"{{"+name+":url}}", url.QueryEscape(v),
			"{{"+name+":path}}", url.PathEscape(v))
	}
	token := ""
	if form, err := url.ParseQuery(sent); err == nil {
		token = form.Get("token")
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = b
	}
	pairs = append(pairs,
		"{{basic}}", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(fzClientID)+":"+url.QueryEscape(fzSecret))),
		"{{sent}}", sent,
		"{{auth}}", r.Header.Get("Authorization"),
		"{{token}}", token)
	return strings.NewReplacer(pairs...)
}

// fuzzServer answers the token, introspection, userinfo and revocation
// endpoints (by the last segment of the path, Salesforce's and the generic
// targets' alike) with the answers of the current fuzz input.
type fuzzServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]fuzzAnswer
}

func newFuzzServer(f *testing.F) *fuzzServer {
	s := &fuzzServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	f.Cleanup(s.Close)
	return s
}

func (s *fuzzServer) set(answers map[string]fuzzAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = answers
}

var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func (s *fuzzServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a, ok := s.answers[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	echo := echoes(r, string(body))
	for _, line := range strings.Split(echo.Replace(a.header), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && headerName.MatchString(k) {
			w.Header().Add(k, strings.TrimSpace(v))
		}
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, echo.Replace(a.body))
}

// fuzzStatus makes any number a status code a server can send.
func fuzzStatus(n int) int {
	if n >= 100 && n <= 999 {
		return n
	}
	if n < 0 {
		n = -(n + 1)
	}
	return 100 + n%900
}

// fuzzTargets are the orgs FuzzCheck checks, each with a canary in every
// secret field it can have (the jwt_bearer one has no client secret: with
// one, it would authenticate with it): Salesforce's password grant with a separate
// introspection client and the signature checked, a generic refresh token
// grant with client_secret_basic kept in reuse mode, client_credentials with
// private_key_jwt and expectations, and Salesforce's jwt_bearer grant.
func fuzzTargets(srv string) []checks.Target {
	intro := &checks.Client{ID: fzIntroID, Secret: fzIntroSecret, AuthMethod: checks.AuthClientSecretPost}
	generic := checks.Endpoints{Token: srv + "/oauth2/token", Introspection: srv + "/oauth2/introspect",
		Revocation: srv + "/oauth2/revoke", Userinfo: srv + "/userinfo"}
	return []checks.Target{{
		Name: "fz-password", Provider: checks.ProviderSalesforce, URL: srv, VerifySignature: true,
		Client:        checks.Client{ID: fzClientID, Secret: fzSecret, AuthMethod: checks.AuthClientSecretPost},
		Grant:         checks.Grant{Type: checks.GrantPassword, Username: "svc@fz.example", Password: fzPassword, RefreshToken: fzRefresh},
		Introspection: checks.Introspection{Client: intro, TokenTypeHint: checks.HintAccessToken},
		Probe:         checks.ProbeUserinfo, TokenMode: checks.TokenModeFresh,
	}, {
		Name: "fz-refresh", Provider: checks.ProviderGeneric, Endpoints: generic,
		Client:        checks.Client{ID: fzClientID, Secret: fzSecret, AuthMethod: checks.AuthClientSecretBasic},
		Grant:         checks.Grant{Type: checks.GrantRefreshToken, RefreshToken: fzRefresh, Password: fzPassword, Scope: "openid offline"},
		Introspection: checks.Introspection{Client: intro},
		Probe:         checks.ProbeUserinfo, TokenMode: checks.TokenModeReuse,
	}, {
		Name: "fz-private-key-jwt", Provider: checks.ProviderGeneric, Endpoints: generic,
		Client: checks.Client{ID: fzClientID, Secret: fzSecret, AuthMethod: checks.AuthPrivateKeyJWT, PrivateKey: fuzzECKey(), KeyID: "k1"},
		Grant:  checks.Grant{Type: checks.GrantClientCredentials, Password: fzPassword, RefreshToken: fzRefresh},
		Probe:  srv + "/api/userinfo", TokenMode: checks.TokenModeFresh,
		Expect: checks.Expectations{MinLifetime: time.Minute, ScopeIncludes: []string{"api"}, Username: "svc@fz.example", ClientID: fzClientID},
	}, {
		Name: "fz-jwt-bearer", Provider: checks.ProviderSalesforce, URL: srv,
		Client:        checks.Client{ID: fzClientID},
		Grant:         checks.Grant{Type: checks.GrantJWTBearer, Username: "svc@fz.example", PrivateKey: testKey(), Password: fzPassword, RefreshToken: fzRefresh},
		Introspection: checks.Introspection{Client: intro},
		Probe:         checks.ProbeUserinfo, TokenMode: checks.TokenModeFresh,
	}}
}

var fuzzECKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// documentedOutcomes are the outcomes docs/outcomes.md has a row for.
func documentedOutcomes(tb testing.TB) map[checks.Outcome]bool {
	doc, err := os.ReadFile("../docs/outcomes.md")
	if err != nil {
		tb.Fatal(err)
	}
	out := map[checks.Outcome]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		out[checks.Outcome(m[1])] = true
	}
	return out
}

// FuzzCheck runs whole checks against a server whose every answer (status,
// headers, body of the token, introspection, userinfo and revocation
// endpoints) comes from the fuzz input and may echo any configured secret in
// any encoding (also a secret the org does not hold, which is then no
// secret of it). Each check, and a second one after it (a kept token, a
// rotated refresh token), ends within its deadline in an outcome
// docs/outcomes.md documents, never in a panic or an internal error, and no
// text of its Result holds any form of a configured secret or a control
// character.
func FuzzCheck(f *testing.F) {
	srv := newFuzzServer(f)
	targets := fuzzTargets(srv.URL)
	documented := documentedOutcomes(f)
	// One transport for every input: its keep-alive connections are reused
	// instead of leaving a closed one behind per request.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	f.Cleanup(transport.CloseIdleConnections)

	const ok = `{"access_token":"00Dfz0000000001!AQ4AQ.fz-access","instance_url":"https://fz.my.salesforce.com","id":"https://login.salesforce.com/id/00Dfz/005fz","token_type":"Bearer","issued_at":"1767225600123","signature":"c2lnbmF0dXJl","scope":"api web"}`
	f.Add(uint8(0), 200, "Content-Type: application/json", ok,
		200, "Content-Type: application/json", `{"active":true,"scope":"api web","client_id":"fz-app:1","username":"svc@fz.example","sub":"005fz","token_type":"access_token","exp":4102444800,"iat":1767225600}`,
		200, "Content-Type: application/json", `{"sub":"005fz","preferred_username":"svc@fz.example"}`,
		200, "", "")
	f.Add(uint8(1), 400, "Content-Type: application/json;charset=UTF-8", `{"error":"invalid_grant","error_description":"token {{refresh}} expired; {{sent}}"}`,
		0, "", "", 0, "", "", 0, "", "")
	f.Add(uint8(2), 401, "WWW-Authenticate: {{basic}}", `{"error":"invalid_client","error_description":"{{auth}}"}`,
		200, "", `{"active":false}`, 401, `WWW-Authenticate: Bearer error="invalid_token", error_description="{{token}}"`, "", 400, "", `{"error":"unsupported_token_type"}`)
	f.Add(uint8(3), 200, "Content-Type: application/json", `{"access_token":"{{secret:b64}}.{{password:url}}","expires_in":3600,"refresh_token":"{{refresh:upper}}","scope":"{{sent}}"}`,
		200, "Content-Type: application/json", `{"active":true,"exp":1,"sub":"{{introsecret:b64url}}","username":"{{password:path}}","client_id":"{{secret:lower}}"}`,
		403, "Content-Type: application/json", `[{"errorCode":"INSUFFICIENT_ACCESS","message":"{{token}} {{auth}}"}]`,
		503, "Retry-After: {{secret}}\nContent-Type: text/html", `<html><title>{{sent}}</title></html>`)
	f.Fuzz(func(t *testing.T, mode uint8,
		tokStatus int, tokHeader, tokBody string,
		inStatus int, inHeader, inBody string,
		prStatus int, prHeader, prBody string,
		rvStatus int, rvHeader, rvBody string) {
		srv.set(map[string]fuzzAnswer{
			"token":      {fuzzStatus(tokStatus), tokHeader, tokBody},
			"introspect": {fuzzStatus(inStatus), inHeader, inBody},
			"userinfo":   {fuzzStatus(prStatus), prHeader, prBody},
			"revoke":     {fuzzStatus(rvStatus), rvHeader, rvBody},
		})
		tg := targets[int(mode)%len(targets)]
		tg.Timeout = time.Second
		c := checks.NewChecker(tg, checks.WithTransport(transport))
		for i := range 2 {
			deadline := 5*tg.Timeout + time.Second // the agent's bound of a whole check
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			began := time.Now()
			res := c.Check(ctx)
			took := time.Since(began)
			cancel()
			if took > deadline+time.Second {
				t.Errorf("check %d of %s took %s, past its deadline of %s", i+1, tg.Name, took, deadline)
			}
			if !documented[res.Outcome] || !slices.Contains(checks.AllOutcomes, res.Outcome) {
				t.Errorf("check %d of %s: outcome %q is not a documented one", i+1, tg.Name, res.Outcome)
			}
			if res.Outcome == checks.OutcomeInternalError {
				t.Errorf("check %d of %s: %s from a server's answer: %s", i+1, tg.Name, res.Outcome, res.Explanation)
			}
			for _, s := range res.Steps {
				if !documented[s.Outcome] {
					t.Errorf("check %d of %s: step %s outcome %q is not a documented one", i+1, tg.Name, s.Step, s.Outcome)
				}
			}
			assertNoEcho(t, res, configuredSecrets(&tg))
		}
	})
}
