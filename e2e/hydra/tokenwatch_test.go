package hydra

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// commandDeadline bounds every run of the binary.
const commandDeadline = 30 * time.Second

// world is Hydra with the clients the tests use, the tokenwatch binary, and
// every value that must never appear in tokenwatch's output.
type world struct {
	hydra   *hydraServer
	bin     string
	dir     string
	env     []string
	secrets *secretList
}

func TestTokenwatchAgainstHydra(t *testing.T) {
	w := newWorld(t)

	t.Run("diagnose", w.testDiagnose)
	t.Run("wrong-secret-explained", w.testWrongSecretText)
	t.Run("example-config", w.testExample)
	t.Run("revocation", w.testRevocation)
	t.Run("token-mode-reuse", w.testReuse)
	t.Run("no-secret-in-output", w.testNoSecrets)
}

const (
	bearerSubject = "reporting@tokenwatch.test"
	bearerKeyID   = "tw-bearer-key"
)

func newWorld(t *testing.T) *world {
	t.Helper()
	h := startHydra(t)
	w := &world{hydra: h, bin: e2etest.Tokenwatch(t), dir: t.TempDir(), secrets: &secretList{}}

	clientKey := w.writeKey(t, "client-assertion.pem")
	bearerKey := w.writeKey(t, "jwt-bearer.pem")

	// One client per case, each with its own secret in the environment.
	secret := func(env string) string {
		s := "tw-" + randomString(28)
		w.secrets.add(s)
		w.env = append(w.env, env+"="+s)
		return s
	}
	cc := []string{"client_credentials"}
	clients := []oauthClient{
		{ID: "tw-basic", Secret: secret("TW_BASIC_SECRET"), GrantTypes: cc, Scope: "read write", AuthMethod: "client_secret_basic"},
		{ID: "tw-post", Secret: secret("TW_POST_SECRET"), GrantTypes: cc, Scope: "read", AuthMethod: "client_secret_post"},
		{ID: "tw-jwt", Secret: secret("TW_JWT_SECRET"), GrantTypes: cc, Scope: "read", AuthMethod: "client_secret_basic", AccessTokenStrategy: "jwt"},
		{ID: "tw-opaque", Secret: secret("TW_OPAQUE_SECRET"), GrantTypes: cc, Scope: "read", AuthMethod: "client_secret_basic", AccessTokenStrategy: "opaque"},
		{ID: "tw-pkjwt", GrantTypes: cc, Scope: "read", AuthMethod: "private_key_jwt", SigningAlg: "RS256",
			JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &clientKey.PublicKey, KeyID: "tw-pkjwt-key", Algorithm: "RS256", Use: "sig"}}}},
		{ID: "tw-bearer", Secret: secret("TW_BEARER_SECRET"), GrantTypes: []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"},
			Scope: "read", AuthMethod: "client_secret_basic"},
		{ID: "tw-revoke", Secret: secret("TW_REVOKE_SECRET"), GrantTypes: cc, Scope: "read", AuthMethod: "client_secret_basic"},
		{ID: "tw-keep", Secret: secret("TW_KEEP_SECRET"), GrantTypes: cc, Scope: "read", AuthMethod: "client_secret_basic"},
		{ID: "tw-short", Secret: secret("TW_SHORT_SECRET"), GrantTypes: cc, Scope: "read", AuthMethod: "client_secret_basic"},
	}
	for _, c := range clients {
		h.createClient(t, c)
	}
	h.setAccessTokenLifespan(t, "tw-short", shortLifespan)
	// Hydra generates its JWT signing keys at the first JWT token it issues,
	// which takes seconds on a busy machine (and may fail once with a 500):
	// have that happen here, not inside a check with a 5 s timeout.
	e2etest.WaitFor(t, time.Minute, "Hydra's JWT signing keys", func() bool {
		return h.tryMint("tw-jwt", w.envValue("TW_JWT_SECRET"), "read") == nil
	})
	// tokenwatch signs jwt_bearer assertions with iss = client id, sub = username.
	h.trustJWTIssuer(t, "tw-bearer", bearerSubject, []string{"read"},
		jose.JSONWebKey{Key: &bearerKey.PublicKey, KeyID: bearerKeyID, Algorithm: "RS256", Use: "sig"})
	wrong := "tw-wrong-" + randomString(20)
	w.secrets.add(wrong)
	w.env = append(w.env, "TW_WRONG_SECRET="+wrong)
	return w
}

// writeKey writes a fresh RSA key as PKCS#8 PEM into the config folder.
func (w *world) writeKey(t *testing.T, name string) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return key
}

// config writes a tokenwatch config with the given orgs. {{TOKEN}},
// {{INTROSPECT}}, {{REVOKE}} and {{USERINFO}} stand for Hydra's endpoints.
func (w *world) config(t *testing.T, name, schedule, orgs string) string {
	t.Helper()
	body := strings.NewReplacer(
		"{{TOKEN}}", w.hydra.tokenURL(),
		"{{INTROSPECT}}", w.hydra.introspectionURL(),
		"{{REVOKE}}", w.hydra.revocationURL(),
		"{{USERINFO}}", w.hydra.userinfoURL(),
	).Replace(orgs)
	// One check at a time: see testDiagnose on Hydra's in-memory database.
	cfg := fmt.Sprintf("global:\n  schedule: %q\n  timeout: 5s\n  max_concurrent_checks: 1\norgs:\n%s", schedule, body)
	path := filepath.Join(w.dir, name+".yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hydraOrg is the usual shape of an org watching Hydra: explicit endpoints
// (Hydra's discovery names no introspection endpoint) and introspection at
// the admin endpoint, which takes no client authentication.
const hydraOrg = `
    provider: generic
    token_url: {{TOKEN}}
    introspection_url: {{INTROSPECT}}
    revocation_url: {{REVOKE}}
    userinfo_url: {{USERINFO}}
    introspection:
      client: {id: hydra-admin, auth_method: none}
`

type diagnoseCase struct {
	name string
	// org is the org's YAML after its name line, indented by four spaces.
	org         string
	wantOutcome checks.Outcome
	// reference names the client (with client_secret_basic) whose equivalent
	// token Hydra is asked about, to compare exp and iat.
	reference, referenceSecretEnv string
	check                         func(t *testing.T, r *checks.Result)
}

func (w *world) testDiagnose(t *testing.T) {
	cases := []diagnoseCase{
		{
			name: "client_secret_basic",
			org: hydraOrg + `    client: {id: tw-basic, secret: "${TW_BASIC_SECRET}", auth_method: client_secret_basic}
    grant: {type: client_credentials, scope: read write}
    expect: {scope_includes: [read, write], client_id: tw-basic}
`,
			wantOutcome: checks.OutcomeOK,
			reference:   "tw-basic", referenceSecretEnv: "TW_BASIC_SECRET",
			check: func(t *testing.T, r *checks.Result) {
				wantSent(t, r, checks.StepToken, "Authorization: Basic (client_id:client_secret)")
				wantNotSent(t, r, checks.StepToken, "client_secret")
				wantSource(t, r, "introspection")
			},
		},
		{
			name: "client_secret_post",
			org: hydraOrg + `    client: {id: tw-post, secret: "${TW_POST_SECRET}", auth_method: client_secret_post}
    grant: {type: client_credentials, scope: read}
`,
			wantOutcome: checks.OutcomeOK,
			check: func(t *testing.T, r *checks.Result) {
				wantSent(t, r, checks.StepToken, "client_secret")
				wantNotSent(t, r, checks.StepToken, "Authorization: Basic (client_id:client_secret)")
				if r.Token.ClientID != "tw-post" {
					t.Errorf("introspected client_id = %q, want tw-post", r.Token.ClientID)
				}
			},
		},
		{
			name: "private_key_jwt",
			org: hydraOrg + `    client: {id: tw-pkjwt, auth_method: private_key_jwt, private_key_file: client-assertion.pem, key_id: tw-pkjwt-key}
    grant: {type: client_credentials, scope: read}
`,
			wantOutcome: checks.OutcomeOK,
			check: func(t *testing.T, r *checks.Result) {
				wantSent(t, r, checks.StepToken, "client_assertion (RS256 JWT)")
				// The revocation request authenticates with a new assertion (a fresh jti).
				wantSent(t, r, checks.StepRevoke, "client_assertion (RS256 JWT)")
			},
		},
		{
			name: "jwt_bearer grant through a trust relationship",
			org: hydraOrg + `    client: {id: tw-bearer, secret: "${TW_BEARER_SECRET}"}
    grant: {type: jwt_bearer, username: ` + bearerSubject + `, private_key_file: jwt-bearer.pem, key_id: ` + bearerKeyID + `, scope: read}
    expect: {scope_includes: [read]}
`,
			wantOutcome: checks.OutcomeOK,
			check: func(t *testing.T, r *checks.Result) {
				wantSent(t, r, checks.StepToken, "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer")
				if r.Token.Subject != bearerSubject {
					t.Errorf("subject = %q, want the assertion's sub %q", r.Token.Subject, bearerSubject)
				}
			},
		},
		{
			name: "JWT access tokens, introspected",
			org: hydraOrg + `    client: {id: tw-jwt, secret: "${TW_JWT_SECRET}"}
    grant: {type: client_credentials, scope: read}
`,
			wantOutcome: checks.OutcomeOK,
			reference:   "tw-jwt", referenceSecretEnv: "TW_JWT_SECRET",
			check: func(t *testing.T, r *checks.Result) {
				wantSource(t, r, "introspection")
				if r.Token.Subject != "tw-jwt" {
					t.Errorf("subject = %q, want tw-jwt", r.Token.Subject)
				}
			},
		},
		{
			// Without introspection the expiry can only come from the token
			// itself: the JWT's exp claim, or expires_in for an opaque token.
			name: "JWT access tokens, expiry read from the token",
			org: `
    provider: generic
    token_url: {{TOKEN}}
    revocation_url: {{REVOKE}}
    userinfo_url: {{USERINFO}}
    client: {id: tw-jwt, secret: "${TW_JWT_SECRET}"}
    grant: {type: client_credentials, scope: read}
`,
			wantOutcome: checks.OutcomeOK,
			reference:   "tw-jwt", referenceSecretEnv: "TW_JWT_SECRET",
			check: func(t *testing.T, r *checks.Result) {
				wantSource(t, r, "jwt")
				if s := r.Step(checks.StepIntrospect); s == nil || !s.Skipped {
					t.Errorf("introspect step = %+v, want skipped (no introspection_url)", s)
				}
			},
		},
		{
			name: "opaque access tokens, expiry from expires_in",
			org: `
    provider: generic
    token_url: {{TOKEN}}
    revocation_url: {{REVOKE}}
    userinfo_url: {{USERINFO}}
    client: {id: tw-opaque, secret: "${TW_OPAQUE_SECRET}"}
    grant: {type: client_credentials, scope: read}
`,
			wantOutcome: checks.OutcomeOK,
			reference:   "tw-opaque", referenceSecretEnv: "TW_OPAQUE_SECRET",
			check: func(t *testing.T, r *checks.Result) {
				wantSource(t, r, "expires_in")
			},
		},
		{
			name: "wrong secret",
			org: hydraOrg + `    client: {id: tw-basic, secret: "${TW_WRONG_SECRET}"}
    grant: {type: client_credentials}
`,
			wantOutcome: checks.OutcomeClientRejected,
			check: func(t *testing.T, r *checks.Result) {
				tok := r.Step(checks.StepToken)
				if tok == nil || tok.Status != http.StatusUnauthorized || !strings.Contains(tok.Detail, "invalid_client") {
					t.Errorf("token step = %+v, want HTTP 401 invalid_client", tok)
				}
				if len(r.Steps) != 1 {
					t.Errorf("steps after a rejected client: %d, want only the token step", len(r.Steps))
				}
			},
		},
		{
			name: "auth method the client is not registered for",
			org: hydraOrg + `    client: {id: tw-post, secret: "${TW_POST_SECRET}", auth_method: client_secret_basic}
    grant: {type: client_credentials}
`,
			wantOutcome: checks.OutcomeClientRejected,
			check: func(t *testing.T, r *checks.Result) {
				if !strings.Contains(r.Fix, "auth_method") {
					t.Errorf("fix does not point at auth_method: %q", r.Fix)
				}
			},
		},
	}
	// Sequential on purpose: Hydra's in-memory database answers concurrent
	// requests with transient errors (a 401 "Unable to serialize access due to
	// a concurrent update", jti_known, even {"active": false} for a live token).
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			org := fmt.Sprintf("case-%d", i)
			cfg := w.config(t, org, "@every 1m", "  - name: "+org+tc.org)
			started := time.Now()
			code, results, out := w.diagnose(t, cfg)
			r := results[org]
			if r == nil {
				t.Fatalf("diagnose printed no result for %s:\n%s", org, out)
			}
			wantCode := 0
			if tc.wantOutcome != checks.OutcomeOK {
				wantCode = 1
			}
			if code != wantCode || r.Outcome != tc.wantOutcome {
				t.Fatalf("diagnose exit %d outcome %s (%s), want exit %d outcome %s\nsteps: %s",
					code, r.Outcome, r.Explanation, wantCode, tc.wantOutcome, stepSummary(r))
			}
			if tc.wantOutcome == checks.OutcomeOK {
				wantHealthySteps(t, r)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if tc.reference != "" {
				w.compareWithHydra(t, r, tc.reference, tc.referenceSecretEnv, started)
			}
		})
	}
}

// wantHealthySteps checks what a healthy check against Hydra looks like:
// every configured step ran and got the answer it should.
func wantHealthySteps(t *testing.T, r *checks.Result) {
	t.Helper()
	wantStatus := map[checks.Step]int{checks.StepToken: 200, checks.StepIntrospect: 200, checks.StepProbe: 200, checks.StepRevoke: 200}
	for _, s := range r.Steps {
		if s.Skipped {
			continue
		}
		if s.Status != wantStatus[s.Step] || s.Outcome != checks.OutcomeOK {
			t.Errorf("step %s: HTTP %d %s (%s), want %d ok", s.Step, s.Status, s.Outcome, s.Detail, wantStatus[s.Step])
		}
	}
	if r.Step(checks.StepRevoke) == nil || r.Step(checks.StepRevoke).Skipped {
		t.Errorf("the minted token was not revoked: %s", stepSummary(r))
	}
	if in := r.Step(checks.StepIntrospect); in != nil && !in.Skipped && (r.Token.Active == nil || !*r.Token.Active) {
		t.Errorf("introspection ran but the token is not reported active")
	}
	if r.Token.Expiry.IsZero() || r.Token.IssuedAt.IsZero() {
		t.Errorf("token expiry %v / issued_at %v: want both known", r.Token.Expiry, r.Token.IssuedAt)
	}
}

// compareWithHydra mints an equivalent token right after the check (same
// client, same lifespan) and compares the exp and iat tokenwatch reported
// with what Hydra's introspection says about it. The check's own token is
// revoked by then, so this is the closest honest comparison.
// compareWithHydra compares what tokenwatch reported of the token diagnose
// minted with Hydra's own introspection of an equivalent token minted just
// after: tokenwatch's token is older by at most the time since started
// (Hydra may take seconds to generate its first signing keys), never newer.
func (w *world) compareWithHydra(t *testing.T, r *checks.Result, clientID, secretEnv string, started time.Time) {
	t.Helper()
	ref := w.mintReference(t, clientID, secretEnv)
	if !ref.Active {
		t.Fatalf("reference token of %s introspects inactive", clientID)
	}
	exp, iat := time.Unix(ref.Exp, 0), time.Unix(ref.Iat, 0)
	const slack = 2 * time.Second
	older := slack + time.Since(started)
	if d := r.Token.Expiry.Sub(exp); d < -older || d > slack {
		t.Errorf("tokenwatch expiry %s, Hydra's exp of an equivalent token minted up to %s later %s: %s apart",
			r.Token.Expiry.UTC().Format(time.RFC3339), older, exp.UTC().Format(time.RFC3339), d)
	}
	if d := r.Token.IssuedAt.Sub(iat); d < -older || d > slack {
		t.Errorf("tokenwatch issued_at %s, Hydra's iat of an equivalent token minted up to %s later %s: %s apart",
			r.Token.IssuedAt.UTC().Format(time.RFC3339), older, iat.UTC().Format(time.RFC3339), d)
	}
	if lt, want := r.Token.Lifetime(), exp.Sub(iat); lt < want-slack || lt > want+slack {
		t.Errorf("tokenwatch lifetime %s, Hydra's %s", lt, want)
	}
}

func (w *world) mintReference(t *testing.T, clientID, secretEnv string) introspection {
	t.Helper()
	secret := w.envValue(secretEnv)
	tok := w.hydra.mint(t, clientID, secret, "read")
	defer w.hydra.revoke(t, clientID, secret, tok)
	return w.hydra.introspect(t, tok)
}

func (w *world) envValue(name string) string {
	for _, kv := range w.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// testWrongSecretText checks that the text a person reads says why.
func (w *world) testWrongSecretText(t *testing.T) {
	cfg := w.config(t, "wrong-secret", "@every 1m", `  - name: wrong-secret`+hydraOrg+`    client: {id: tw-basic, secret: "${TW_WRONG_SECRET}"}
    grant: {type: client_credentials}
`)
	code, stdout, stderr := w.run(t, "diagnose", "--config.file="+cfg)
	if code != 1 {
		t.Errorf("diagnose exit %d, want 1", code)
	}
	for _, want := range []string{"UNHEALTHY, outcome client_rejected", "HTTP 401", "invalid_client", "client.id", "auth_method"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("diagnose text lacks %q:\n%s%s", want, stdout, stderr)
		}
	}
}

// testExample runs configs/examples/hydra.yml as a user would, with only its
// ports changed, after registering the clients and the trust relationship its
// comments describe.
func (w *world) testExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join(moduleRoot(t), "configs", "examples", "hydra.yml"))
	if err != nil {
		t.Fatal(err)
	}
	signed := w.writeKey(t, "example/keys/tokenwatch-signed.pem")
	bearer := w.writeKey(t, "example/keys/tokenwatch-bearer.pem")
	secret := func(env string) string {
		s := "tw-example-" + randomString(24)
		w.secrets.add(s)
		w.env = append(w.env, env+"="+s)
		return s
	}
	cc := []string{"client_credentials"}
	w.hydra.createClient(t, oauthClient{ID: "tokenwatch-monitor", Secret: secret("HYDRA_CLIENT_SECRET"), GrantTypes: cc,
		Scope: "read", AuthMethod: "client_secret_basic"})
	w.hydra.createClient(t, oauthClient{ID: "tokenwatch-signed", GrantTypes: cc, Scope: "read", AuthMethod: "private_key_jwt", SigningAlg: "RS256",
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &signed.PublicKey, KeyID: "tokenwatch-key-1", Algorithm: "RS256", Use: "sig"}}}})
	w.hydra.createClient(t, oauthClient{ID: "tokenwatch-bearer", Secret: secret("HYDRA_BEARER_CLIENT_SECRET"),
		GrantTypes: []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"}, Scope: "read", AuthMethod: "client_secret_basic"})
	w.hydra.trustJWTIssuer(t, "tokenwatch-bearer", "reporting@example.com", []string{"read"},
		jose.JSONWebKey{Key: &bearer.PublicKey, KeyID: "tokenwatch-bearer-1", Algorithm: "RS256", Use: "sig"})

	cfg := strings.NewReplacer(
		"http://127.0.0.1:4444", w.hydra.public,
		"http://127.0.0.1:4445", w.hydra.admin,
	).Replace(string(example))
	if cfg == string(example) {
		t.Fatal("the example names no Hydra at 127.0.0.1:4444/4445")
	}
	path := filepath.Join(w.dir, "example", "hydra.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := w.run(t, "check-config", "--config.file="+path); code != 0 {
		t.Fatalf("check-config exit %d:\n%s%s", code, stdout, stderr)
	}
	// One check at a time (an environment override of global), for Hydra's in-memory database.
	code, results, out := w.diagnose(t, path, "TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS=1")
	if code != 0 {
		t.Errorf("diagnose of the example exit %d, want 0", code)
	}
	for _, org := range []string{"hydra-client-credentials", "hydra-private-key-jwt", "hydra-jwt-bearer"} {
		r := results[org]
		if r == nil {
			t.Errorf("no result for %s:\n%s", org, out)
			continue
		}
		if r.Outcome != checks.OutcomeOK {
			t.Errorf("%s: outcome %s (%s), want ok\n%s", org, r.Outcome, r.Explanation, stepSummary(r))
		}
	}
}

// testRevocation proves that tokenwatch's revoke step revokes at Hydra. The
// test cannot see the tokens tokenwatch mints, so the org's public endpoints
// go through a reverse proxy in front of Hydra that keeps the access tokens
// Hydra hands out; after the check, Hydra's admin endpoint is asked about
// exactly those tokens. The control row, without revocation_url, shows the
// same question answering active, so the first row's answer is the revoke's.
func (w *world) testRevocation(t *testing.T) {
	cases := []struct {
		name       string
		revocation bool
		wantActive bool
	}{
		{name: "revoked by tokenwatch", revocation: true, wantActive: false},
		{name: "control: no revocation_url", revocation: false, wantActive: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, w.hydra.public)
			revoke := ""
			if tc.revocation {
				revoke = "    revocation_url: " + rec.url + "/oauth2/revoke\n"
			}
			org := fmt.Sprintf("revocation-%d", i)
			cfg := w.config(t, org, "@every 1m", "  - name: "+org+`
    provider: generic
    token_url: `+rec.url+`/oauth2/token
    introspection_url: {{INTROSPECT}}
    userinfo_url: `+rec.url+`/userinfo
`+revoke+`    introspection:
      client: {id: hydra-admin, auth_method: none}
    client: {id: tw-revoke, secret: "${TW_REVOKE_SECRET}"}
    grant: {type: client_credentials}
`)
			code, results, out := w.diagnose(t, cfg)
			r := results[org]
			if code != 0 || r == nil || r.Outcome != checks.OutcomeOK {
				t.Fatalf("diagnose exit %d, result %+v\n%s", code, r, out)
			}
			tokens := rec.tokens()
			if len(tokens) != 1 {
				t.Fatalf("Hydra issued %d tokens through the proxy, want 1", len(tokens))
			}
			w.secrets.add(tokens[0])
			rv := r.Step(checks.StepRevoke)
			if tc.revocation {
				if rv == nil || rv.Skipped || rv.Status != http.StatusOK {
					t.Errorf("revoke step = %+v, want HTTP 200", rv)
				}
				if !rec.saw("POST /oauth2/revoke 200") {
					t.Errorf("Hydra never answered a revocation with 200; requests: %v", rec.requests())
				}
			} else if rv == nil || !rv.Skipped {
				t.Errorf("revoke step = %+v, want skipped without revocation_url", rv)
			}
			if got := w.hydra.introspect(t, tokens[0]).Active; got != tc.wantActive {
				t.Errorf("after the check Hydra introspects the token tokenwatch minted as active=%v, want %v", got, tc.wantActive)
			}
			if !tc.wantActive {
				return
			}
			w.hydra.revoke(t, "tw-revoke", w.envValue("TW_REVOKE_SECRET"), tokens[0])
		})
	}
}

// shortLifespan is tw-short's token lifetime: long enough for a check or two
// on the kept token, short enough to watch it end.
const shortLifespan = 3 * time.Second

// testReuse runs the daemon with token_mode reuse and drives its checks with
// /probe, reading each check's result from /api/v1/orgs. Besides the check
// every org gets at start, the schedule fires once a year (on 1 January), so
// only the test's probes run checks.
func (w *world) testReuse(t *testing.T) {
	// short-lived's tokens pass a recorder, so that the test can ask Hydra
	// when the kept one has ended.
	short := newRecorder(t, w.hydra.public)
	shortOrg := strings.Replace(hydraOrg, "{{TOKEN}}", short.url+"/oauth2/token", 1)
	cfg := w.config(t, "reuse", "0 0 1 1 *", `  - name: short-lived`+shortOrg+`    client: {id: tw-short, secret: "${TW_SHORT_SECRET}"}
    grant: {type: client_credentials}
    token_mode: reuse
  - name: revoked-by-admin`+hydraOrg+`    client: {id: tw-keep, secret: "${TW_KEEP_SECRET}"}
    grant: {type: client_credentials}
    token_mode: reuse
`)
	d := w.startDaemon(t, cfg)
	d.waitChecked(t, "short-lived", "revoked-by-admin")

	t.Run("kept token expires", func(t *testing.T) {
		first := d.probe(t, "short-lived")
		if first.Outcome != checks.OutcomeOK {
			t.Fatalf("first check: outcome %s (%s), want ok", first.Outcome, first.Explanation)
		}
		if lt := first.Token.Lifetime(); lt < shortLifespan-time.Second || lt > shortLifespan+time.Second {
			t.Errorf("reported lifetime %s, want about %s (the client's lifespan at Hydra)", lt, shortLifespan)
		}
		if got := d.metric(t, `tokenwatch_token_expiry_timestamp_seconds{org="short-lived"}`); got != float64(first.Token.Expiry.Unix()) {
			t.Errorf("tokenwatch_token_expiry_timestamp_seconds = %v, want the reported expiry %d", got, first.Token.Expiry.Unix())
		}

		second := d.probe(t, "short-lived")
		if second.Outcome != checks.OutcomeOK || second.Token.Minted || !second.Token.IssuedAt.Equal(first.Token.IssuedAt) {
			t.Errorf("second check: outcome %s, minted %v, issued_at %s; want ok on the kept token issued at %s",
				second.Outcome, second.Token.Minted, second.Token.IssuedAt, first.Token.IssuedAt)
		}

		// Past the kept token's exp: it has died of old age, which is its
		// normal end, so a new token is minted in the same check. Hydra
		// says when: its introspection of the kept token turns inactive.
		minted := short.tokens()
		if len(minted) == 0 {
			t.Fatal("Hydra issued no token to short-lived through the recorder")
		}
		kept := minted[len(minted)-1] // the token of the first two checks
		w.secrets.add(kept)
		e2etest.WaitFor(t, shortLifespan+10*time.Second, "Hydra to end the kept token at its exp", func() bool {
			return !w.hydra.introspect(t, kept).Active
		})
		third := d.probe(t, "short-lived")
		t.Logf("after expiry: outcome %s, minted %v: %s", third.Outcome, third.Token.Minted, third.Explanation)
		if third.Outcome != checks.OutcomeOK || !third.Token.Minted || !third.Token.IssuedAt.After(first.Token.IssuedAt) {
			t.Errorf("check after the kept token's exp: outcome %s, minted %v, issued_at %s; want ok with a new token issued after %s\n%s",
				third.Outcome, third.Token.Minted, third.Token.IssuedAt, first.Token.IssuedAt, stepSummary(third))
		}
		if want := "The kept token ended at its exp"; !strings.HasPrefix(third.Explanation, want) {
			t.Errorf("explanation %q does not start with %q", third.Explanation, want)
		}
	})

	t.Run("kept token revoked at Hydra", func(t *testing.T) {
		first := d.probe(t, "revoked-by-admin")
		if first.Outcome != checks.OutcomeOK || first.Token.Minted {
			t.Fatalf("first probe: outcome %s, minted %v; want ok on the token kept since the start (%s)", first.Outcome, first.Token.Minted, first.Explanation)
		}
		w.hydra.deleteTokens(t, "tw-keep")
		dead := d.probe(t, "revoked-by-admin")
		if dead.Outcome != checks.OutcomeTokenInvalidatedEarly {
			t.Fatalf("check after Hydra deleted the client's tokens: outcome %s (%s), want %s\n%s",
				dead.Outcome, dead.Explanation, checks.OutcomeTokenInvalidatedEarly, stepSummary(dead))
		}
		if in := dead.Step(checks.StepIntrospect); in == nil || !strings.Contains(in.Detail, `"active": false`) {
			t.Errorf("introspect step = %+v, want it to report active false", in)
		}
		if pr := dead.Step(checks.StepProbe); pr == nil || pr.Status != http.StatusUnauthorized {
			t.Errorf("probe step = %+v, want the userinfo call refused with 401", pr)
		}
		if got := d.metric(t, `tokenwatch_introspection_active{org="revoked-by-admin"}`); got != 0 {
			t.Errorf("tokenwatch_introspection_active = %v after the revocation, want 0", got)
		}
		again := d.probe(t, "revoked-by-admin")
		if again.Outcome != checks.OutcomeOK || !again.Token.Minted {
			t.Errorf("check after the early end: outcome %s, minted %v; want ok with a new token", again.Outcome, again.Token.Minted)
		}
	})
	d.stop(t)
}

func (w *world) testNoSecrets(t *testing.T) {
	w.secrets.mu.Lock()
	defer w.secrets.mu.Unlock()
	if len(w.secrets.outputs) == 0 {
		t.Fatal("no tokenwatch output was collected")
	}
	for i, out := range w.secrets.outputs {
		for _, s := range w.secrets.values {
			if strings.Contains(out, s) {
				t.Errorf("output #%d contains a secret or token (%d chars, starts %q)", i, len(s), s[:4])
			}
		}
	}
}

// secretList holds the values that must never be printed and everything
// tokenwatch printed, for the final leak check.
type secretList struct {
	mu      sync.Mutex
	values  []string
	outputs []string
}

func (s *secretList) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values = append(s.values, v)
}

func (s *secretList) saw(out ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outputs = append(s.outputs, out...)
}

// run executes the binary and returns its exit code, stdout and stderr.
func (w *world) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return w.runEnv(t, nil, args...)
}

// runEnv is run with extra environment variables.
func (w *world) runEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Env = append(append(os.Environ(), w.env...), env...)
	cmd.Dir = w.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	w.secrets.saw(stdout.String(), stderr.String())
	if ctx.Err() != nil {
		t.Fatalf("tokenwatch %v did not finish within %s", args, commandDeadline)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("tokenwatch %v: %v", args, err)
	return 0, "", ""
}

// diagnose runs `diagnose --output=json` and returns the results by org.
func (w *world) diagnose(t *testing.T, config string, env ...string) (int, map[string]*checks.Result, string) {
	t.Helper()
	code, stdout, stderr := w.runEnv(t, env, "diagnose", "--config.file="+config, "--output=json")
	var doc struct {
		Orgs []struct {
			Org    string         `json:"org"`
			Result *checks.Result `json:"result"`
		} `json:"orgs"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("diagnose exit %d printed no JSON (%v):\n%s%s", code, err, stdout, stderr)
	}
	out := map[string]*checks.Result{}
	for _, o := range doc.Orgs {
		out[o.Org] = o.Result
	}
	return code, out, stdout + stderr
}

// daemon is a running `tokenwatch run`.
type daemon struct {
	cmd    *exec.Cmd
	base   string
	logs   *e2etest.Buffer
	exited chan error
	w      *world
	http   *http.Client
}

func (w *world) startDaemon(t *testing.T, config string) *daemon {
	t.Helper()
	d := &daemon{base: "http://127.0.0.1:" + freePort(t), logs: &e2etest.Buffer{}, exited: make(chan error, 1), w: w,
		http: &http.Client{Timeout: commandDeadline}}
	d.cmd = exec.Command(w.bin, "--config.file="+config, "--web.listen-address="+strings.TrimPrefix(d.base, "http://"), "--storage.path="+t.TempDir())
	d.cmd.Env = append(os.Environ(), w.env...)
	d.cmd.Dir = w.dir
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		w.secrets.saw(d.logs.String())
	})
	ready := e2etest.Poll(commandDeadline, func() bool {
		resp, err := d.http.Get(d.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ready {
		t.Fatalf("the daemon was not ready within %s:\n%s", commandDeadline, tail(d.logs.String(), 20))
	}
	return d
}

func (d *daemon) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := d.http.Get(d.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	d.w.secrets.saw(string(b))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s answered %d: %.300s", path, resp.StatusCode, b)
	}
	return string(b)
}

// probe runs one check of the org now (max_age=0s: no earlier result
// answers) and returns its result.
func (d *daemon) probe(t *testing.T, org string) *checks.Result {
	t.Helper()
	d.get(t, "/probe?max_age=0s&org="+url.QueryEscape(org))
	r := d.last(t)[org]
	if r == nil {
		t.Fatalf("/api/v1/orgs has no result for %s after a probe", org)
	}
	return r
}

// last returns the last result of every org from /api/v1/orgs.
func (d *daemon) last(t *testing.T) map[string]*checks.Result {
	t.Helper()
	var list struct {
		Orgs []struct {
			Name string         `json:"name"`
			Last *checks.Result `json:"last"`
		} `json:"orgs"`
	}
	if err := json.Unmarshal([]byte(d.get(t, "/api/v1/orgs")), &list); err != nil {
		t.Fatalf("/api/v1/orgs: %v", err)
	}
	out := map[string]*checks.Result{}
	for _, o := range list.Orgs {
		out[o.Name] = o.Last
	}
	return out
}

// waitChecked waits for the check each org gets when the daemon starts.
func (d *daemon) waitChecked(t *testing.T, orgs ...string) {
	t.Helper()
	e2etest.WaitFor(t, commandDeadline, "the orgs' first checks", func() bool {
		last := d.last(t)
		for _, o := range orgs {
			if last[o] == nil {
				return false
			}
		}
		return true
	})
}

// metric returns the value of one series of /metrics.
func (d *daemon) metric(t *testing.T, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(d.get(t, "/metrics"), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscanf(rest, "%g", &v); err == nil {
				return v
			}
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("daemon exited with %v after SIGTERM", err)
		}
	case <-time.After(commandDeadline):
		t.Errorf("daemon did not stop within %s of SIGTERM", commandDeadline)
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// recorder is a reverse proxy in front of Hydra's public port. It keeps the
// access tokens Hydra issues through it and a line per request.
type recorder struct {
	url  string
	mu   sync.Mutex
	toks []string
	reqs []string
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rec.reqs = append(rec.reqs, fmt.Sprintf("%s %s %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode))
		if resp.Request.URL.Path != "/oauth2/token" || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(body, &tok) == nil && tok.AccessToken != "" {
			rec.toks = append(rec.toks, tok.AccessToken)
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	rec.url = srv.URL
	return rec
}

func (r *recorder) tokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.toks...)
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

func (r *recorder) saw(line string) bool {
	for _, l := range r.requests() {
		if l == line {
			return true
		}
	}
	return false
}

func wantSent(t *testing.T, r *checks.Result, step checks.Step, param string) {
	t.Helper()
	s := r.Step(step)
	if s == nil {
		t.Errorf("no %s step", step)
		return
	}
	for _, p := range s.Sent {
		if p == param {
			return
		}
	}
	t.Errorf("%s step sent %v, want %q among them", step, s.Sent, param)
}

func wantNotSent(t *testing.T, r *checks.Result, step checks.Step, param string) {
	t.Helper()
	if s := r.Step(step); s != nil {
		for _, p := range s.Sent {
			if p == param {
				t.Errorf("%s step sent %q, which this auth method must not send", step, param)
			}
		}
	}
}

func wantSource(t *testing.T, r *checks.Result, source string) {
	t.Helper()
	if r.Token.ExpirySource != source {
		t.Errorf("expiry source %q, want %q", r.Token.ExpirySource, source)
	}
}

func stepSummary(r *checks.Result) string {
	var parts []string
	for _, s := range r.Steps {
		if s.Skipped {
			parts = append(parts, fmt.Sprintf("%s skipped", s.Step))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s HTTP %d %s: %s", s.Step, s.Status, s.Outcome, s.Detail))
	}
	return strings.Join(parts, "; ")
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if gomod := strings.TrimSpace(string(out)); err == nil && gomod != "" && gomod != os.DevNull {
		return filepath.Dir(gomod)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}
