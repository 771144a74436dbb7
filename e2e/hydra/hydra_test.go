package hydra

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// hydraVersion is the release scripts/build-hydra.sh builds.
const hydraVersion = "v2.3.0"

// hydraBinary finds the Hydra binary: $HYDRA_BIN, else the build script's
// cache. Without one the test skips, except under CI=true, where a missing
// peer must not turn into a silently green run (e2etest.Missing).
func hydraBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("HYDRA_BIN")
	if path == "" {
		cache, err := os.UserCacheDir()
		if err == nil {
			path = filepath.Join(cache, "tokenwatch", "hydra-"+hydraVersion, "hydra")
		}
	}
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return path
	}
	e2etest.Missing(t, fmt.Sprintf("ORY Hydra %s (HYDRA_BIN or %q)", hydraVersion, path),
		"build it with scripts/build-hydra.sh, or run ./scripts/test.sh, which does")
	return ""
}

// hydraServer is a running `hydra serve all` with an in-memory database.
type hydraServer struct {
	public string // http://127.0.0.1:port, the OAuth endpoints
	admin  string // http://127.0.0.1:port, the admin API and introspection
	cmd    *exec.Cmd
	logs   *e2etest.Buffer
	exited chan struct{}
	http   *http.Client
}

// startHydra starts Hydra on two free loopback ports and stops it when the
// test ends. A port taken between choosing it and Hydra binding it makes
// Hydra exit; that is retried with new ports.
func startHydra(t *testing.T) *hydraServer {
	t.Helper()
	bin := hydraBinary(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		h, err := launchHydra(t, bin)
		if err == nil {
			return h
		}
		lastErr = err
	}
	t.Fatalf("starting Hydra: %v", lastErr)
	return nil
}

func launchHydra(t *testing.T, bin string) (*hydraServer, error) {
	dir := t.TempDir()
	publicPort, adminPort := freePort(t), freePort(t)
	h := &hydraServer{
		public: "http://127.0.0.1:" + publicPort,
		admin:  "http://127.0.0.1:" + adminPort,
		logs:   &e2etest.Buffer{},
		exited: make(chan struct{}),
		http:   &http.Client{Timeout: 10 * time.Second},
	}
	cfg := fmt.Sprintf(`dsn: memory
serve:
  public: {host: 127.0.0.1, port: %s}
  admin: {host: 127.0.0.1, port: %s}
urls:
  self:
    issuer: %s
    public: %s
secrets:
  system: [%q]
log:
  level: warn
`, publicPort, adminPort, h.public, h.public, randomString(24))
	config := filepath.Join(dir, "hydra.yml")
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// --dev allows the plain-http issuer on loopback.
	h.cmd = exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "-c", config)
	h.cmd.Dir = dir
	h.cmd.Stdout, h.cmd.Stderr = h.logs, h.logs
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("Hydra's log (last lines):\n%s", tail(h.logs.String(), 30))
		}
	})

	for _, base := range []string{h.public, h.admin} {
		exited := false
		ready := e2etest.Poll(30*time.Second, func() bool {
			select {
			case <-h.exited:
				exited = true
				return true
			default:
			}
			resp, err := h.http.Get(base + "/health/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		switch {
		case exited:
			return nil, fmt.Errorf("hydra exited before it was ready:\n%s", tail(h.logs.String(), 20))
		case !ready:
			h.stop()
			return nil, fmt.Errorf("hydra not ready within 30s at %s:\n%s", base, tail(h.logs.String(), 20))
		}
	}
	return h, nil
}

// stop ends Hydra: SIGTERM, then SIGKILL after five seconds.
func (h *hydraServer) stop() {
	select {
	case <-h.exited:
		return
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}

func (h *hydraServer) tokenURL() string      { return h.public + "/oauth2/token" }
func (h *hydraServer) revocationURL() string { return h.public + "/oauth2/revoke" }
func (h *hydraServer) userinfoURL() string   { return h.public + "/userinfo" }

// introspectionURL is the admin endpoint, which takes no client authentication.
func (h *hydraServer) introspectionURL() string { return h.admin + "/admin/oauth2/introspect" }

// oauthClient is a client registered through Hydra's admin API.
type oauthClient struct {
	ID         string   `json:"client_id"`
	Secret     string   `json:"client_secret,omitempty"`
	GrantTypes []string `json:"grant_types"`
	Scope      string   `json:"scope"`
	AuthMethod string   `json:"token_endpoint_auth_method"`
	// AccessTokenStrategy is "opaque" or "jwt"; empty takes Hydra's global setting (opaque).
	AccessTokenStrategy string              `json:"access_token_strategy,omitempty"`
	SigningAlg          string              `json:"token_endpoint_auth_signing_alg,omitempty"`
	JWKS                *jose.JSONWebKeySet `json:"jwks,omitempty"`
}

func (h *hydraServer) createClient(t *testing.T, c oauthClient) {
	t.Helper()
	h.adminJSON(t, http.MethodPost, "/admin/clients", c, http.StatusCreated)
}

// setAccessTokenLifespan sets the client's client_credentials token lifetime.
func (h *hydraServer) setAccessTokenLifespan(t *testing.T, clientID string, d time.Duration) {
	t.Helper()
	h.adminJSON(t, http.MethodPut, "/admin/clients/"+url.PathEscape(clientID)+"/lifespans",
		map[string]string{"client_credentials_grant_access_token_lifespan": d.String()}, http.StatusOK)
}

// trustJWTIssuer lets assertions signed by key, from issuer about subject,
// be exchanged for tokens (RFC 7523 §2.1, Hydra's trust relationships).
func (h *hydraServer) trustJWTIssuer(t *testing.T, issuer, subject string, scope []string, key jose.JSONWebKey) {
	t.Helper()
	h.adminJSON(t, http.MethodPost, "/admin/trust/grants/jwt-bearer/issuers", map[string]any{
		"issuer":     issuer,
		"subject":    subject,
		"scope":      scope,
		"jwk":        key,
		"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	}, http.StatusCreated)
}

// deleteTokens removes every access and refresh token of a client: Hydra's
// admin way of revoking what a client holds without knowing the tokens.
func (h *hydraServer) deleteTokens(t *testing.T, clientID string) {
	t.Helper()
	h.adminJSON(t, http.MethodDelete, "/admin/oauth2/tokens?client_id="+url.QueryEscape(clientID), nil, http.StatusNoContent)
}

func (h *hydraServer) adminJSON(t *testing.T, method, path string, body any, want int) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.admin+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("hydra admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != want {
		// The admin API echoes client secrets; say only what went wrong.
		t.Fatalf("hydra admin %s %s answered %d, want %d (%d bytes)", method, strings.SplitN(path, "?", 2)[0], resp.StatusCode, want, len(answer))
	}
}

// introspection is Hydra's RFC 7662 answer.
type introspection struct {
	Active   bool   `json:"active"`
	ClientID string `json:"client_id"`
	Subject  string `json:"sub"`
	Scope    string `json:"scope"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
}

// introspect asks Hydra's admin endpoint about a token.
func (h *hydraServer) introspect(t *testing.T, token string) introspection {
	t.Helper()
	resp, err := h.http.PostForm(h.introspectionURL(), url.Values{"token": {token}})
	if err != nil {
		t.Fatalf("introspect: %v", err)
	}
	defer resp.Body.Close()
	var in introspection
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		t.Fatalf("introspect: %v", err)
	}
	return in
}

// mint obtains a client_credentials token with client_secret_basic, as a
// reference for what Hydra issues to the client tokenwatch used.
// tryMint mints and revokes nothing: it reports whether Hydra issued a
// token to the client now.
func (h *hydraServer) tryMint(clientID, secret, scope string) error {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodPost, h.tokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func (h *hydraServer) mint(t *testing.T, clientID, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest(http.MethodPost, h.tokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("mint for %s: status %d, decode error %v", clientID, resp.StatusCode, err)
	}
	return tok.AccessToken
}

// revoke revokes a token as its client (RFC 7009).
func (h *hydraServer) revoke(t *testing.T, clientID, secret, token string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.revocationURL(), strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke answered %d", resp.StatusCode)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
