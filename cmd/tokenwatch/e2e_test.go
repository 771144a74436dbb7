package main

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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// Canary credentials: unique values that must never leave tokenwatch.
const (
	canaryClientSecret = "CANARYclientSECRET0a1b2c"
	canaryPassword     = "CANARYpassw0rd9z8y"
	canarySecToken     = "CANARYsecTOKEN7x6w"
	canaryIntroSecret  = "CANARYintroSECRET5v4u"
)

// fixture is a simulated org plus a config file that points at it.
type fixture struct {
	org      *orgsim.Org
	dir      string
	config   string
	secrets  []string
	sessions string // prefix of every access token the org issues
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), org: orgsim.New(orgsim.Options{OrgID: "00D5e000000E2EAAA"})}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f.org.AddUser(orgsim.User{Username: "integration@e2e.example", Password: canaryPassword, SecurityToken: canarySecToken})
	f.org.AddUser(orgsim.User{Username: "jwt@e2e.example", Password: "x"})
	f.org.AddApp(orgsim.App{ClientID: "seed-app", ClientSecret: canaryClientSecret})
	f.org.AddApp(orgsim.App{ClientID: "all-app", ClientSecret: canaryIntroSecret, IntrospectAll: true, RunAsUser: "integration@e2e.example", RefreshTokenRotation: true})
	f.org.AddApp(orgsim.App{ClientID: "jwt-app", ClientSecret: "jwt-secret", CertificateKey: &key.PublicKey, PreApproved: []string{"jwt@e2e.example"}})
	if err := f.org.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.org.Close)
	rt, err := f.org.IssueRefreshToken("all-app", "integration@e2e.example")
	if err != nil {
		t.Fatal(err)
	}
	f.sessions = f.org.OrgID()[:15] + "!"
	f.secrets = []string{canaryClientSecret, canaryPassword, canarySecToken, canaryIntroSecret, rt, f.sessions}

	der, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("jwt.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	write("password", canaryPassword+canarySecToken+"\n")
	write("refresh", rt+"\n")
	f.config = filepath.Join(f.dir, "tokenwatch.yml")
	f.writeConfig(t, "")
	return f
}

// writeConfig writes the config file, with extra org entries appended.
func (f *fixture) writeConfig(t *testing.T, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(`global:
  schedule: "@every 2s"
  timeout: 3s
orgs:
  - name: seed-case
    url: %[1]s
    client: {id: seed-app, secret: "${E2E_CLIENT_SECRET}"}
    grant: {type: password, username: integration@e2e.example, password_file: password}
    labels: {team: integrations}
  - name: healthy-cc
    url: %[1]s
    client: {id: all-app, secret: %[2]s}
    grant: {type: client_credentials}
    metrics: {step_histograms: true, phases: true}
  - name: healthy-jwt
    url: %[1]s
    client: {id: jwt-app, auth_method: none}
    grant: {type: jwt_bearer, username: jwt@e2e.example, private_key_file: jwt.pem}
    introspection: {client: {id: jwt-app, secret: jwt-secret}}
  - name: healthy-refresh
    url: %[1]s
    client: {id: all-app, secret: %[2]s}
    grant: {type: refresh_token, refresh_token_file: refresh}
  - name: separate-introspector
    url: %[1]s
    client: {id: seed-app, secret: "${E2E_CLIENT_SECRET}"}
    grant: {type: password, username: integration@e2e.example, password_file: password}
    introspection:
      client: {id: all-app, secret: %[2]s}
%[3]s`, f.org.URL(), canaryIntroSecret, extra)
	if err := os.WriteFile(f.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) env() []string {
	return append(os.Environ(), "E2E_CLIENT_SECRET="+canaryClientSecret)
}

// assertNoSecrets fails when any canary or issued token appears in text.
func (f *fixture) assertNoSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range f.secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s contains a secret or token (starting %q)", where, s[:6])
		}
	}
}

// daemon is a running `tokenwatch run`.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	logs *e2etest.Buffer
}

func startDaemon(t *testing.T, f *fixture) *daemon {
	t.Helper()
	d := &daemon{addr: e2etest.FreeAddr(t), logs: &e2etest.Buffer{}}
	d.cmd = exec.Command(e2etest.Tokenwatch(t), "--config.file="+f.config, "--web.listen-address="+d.addr, "--log.level=debug", "--storage.path="+t.TempDir())
	d.cmd.Env = f.env()
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
	})
	e2etest.WaitFor(t, 20*time.Second, "the daemon to be ready", func() bool {
		resp, err := http.Get("http://" + d.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return d
}

func (d *daemon) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("daemon exited with %v after SIGTERM\n%s", err, d.logs)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("daemon did not stop within 20s of SIGTERM")
		_ = d.cmd.Process.Kill()
	}
}

func TestDaemonEndToEnd(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f)

	var metrics string
	e2etest.WaitFor(t, 20*time.Second, "every org to be checked twice", func() bool {
		_, metrics = d.get(t, "/metrics")
		for _, series := range []string{
			`{org="seed-case",outcome="introspection_not_permitted"}`, `{org="healthy-cc",outcome="ok"}`,
			`{org="healthy-jwt",outcome="ok"}`, `{org="healthy-refresh",outcome="ok"}`, `{org="separate-introspector",outcome="ok"}`,
		} {
			if v, ok := sample(metrics, "tokenwatch_checks_total"+series); !ok || v < 2 {
				return false
			}
		}
		return true
	})
	for _, want := range []string{
		`tokenwatch_check_success{org="seed-case"} 0`,
		`tokenwatch_introspection_active{org="seed-case"} 0`,
		`tokenwatch_check_success{org="healthy-cc"} 1`,
		`tokenwatch_check_success{org="healthy-jwt"} 1`,
		`tokenwatch_check_success{org="healthy-refresh"} 1`,
		`tokenwatch_check_success{org="separate-introspector"} 1`,
		`tokenwatch_introspection_active{org="separate-introspector"} 1`,
		`tokenwatch_org_info{grant="password",org="seed-case",provider="salesforce",team="integrations"} 1`,
		`tokenwatch_step_last_duration_seconds{org="healthy-jwt",step="token"}`,
		`tokenwatch_fleet_step_duration_seconds_bucket{provider="salesforce",step="introspect",le="+Inf"}`,
		// healthy-cc opts in to its step histograms and phases.
		`tokenwatch_step_duration_seconds_bucket{org="healthy-cc",step="introspect",le="+Inf"}`,
		`tokenwatch_step_phase_duration_seconds{org="healthy-cc",phase="processing",step="token"}`,
		`tokenwatch_token_expiry_timestamp_seconds{org="healthy-cc"}`,
		`tokenwatch_token_issued_timestamp_seconds{org="healthy-jwt"}`,
		`tokenwatch_check_last_run_timestamp_seconds{org="seed-case"}`,
		`tokenwatch_build_info{`,
		`tokenwatch_config_last_reload_successful 1`,
		`tokenwatch_config_last_reload_success_timestamp_seconds`,
		`tokenwatch_config_reloads_total{result="success"} 1`,
		`tokenwatch_check_queue_wait_seconds_count`,
		`tokenwatch_checks_running`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, unwanted := range []string{
		// The other orgs keep the default: neither histograms nor phases.
		`tokenwatch_step_duration_seconds_bucket{org="healthy-jwt"`,
		`tokenwatch_step_phase_duration_seconds{org="healthy-jwt"`,
	} {
		if strings.Contains(metrics, unwanted) {
			t.Errorf("/metrics has %s...", unwanted)
		}
	}
	// A subtest: without promtool only the lint skips, not the rest.
	t.Run("promtool check metrics", func(t *testing.T) { promtoolCheckMetrics(t, metrics) })

	code, api := d.get(t, "/api/v1/orgs")
	if code != 200 || !strings.Contains(api, `"introspection_not_permitted"`) || !strings.Contains(api, "Introspect All Tokens") {
		t.Errorf("/api/v1/orgs (%d) does not explain the seed case: %.300s", code, api)
	}
	code, page := d.get(t, "/")
	if code != 200 || !strings.Contains(page, "seed-case") || !strings.Contains(page, "FAILING") {
		t.Errorf("status page (%d) does not show the seed case failing", code)
	}
	code, probe := d.get(t, "/probe?org=healthy-cc")
	if code != 200 || !strings.Contains(probe, "tokenwatch_probe_success 1") {
		t.Errorf("/probe (%d): %.300s", code, probe)
	}
	if code, _ := d.get(t, "/probe?org=nope"); code != 404 {
		t.Errorf("/probe of an unknown org answered %d, want 404", code)
	}
	for path, want := range map[string]int{"/-/healthy": 200, "/-/ready": 200} {
		if code, _ := d.get(t, path); code != want {
			t.Errorf("%s answered %d", path, code)
		}
	}

	// A bad config is refused over HTTP and the old one keeps running.
	good, _ := os.ReadFile(f.config)
	if err := os.WriteFile(f.config, append(good, []byte("    bogus_key: 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+d.addr+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "orgs[4].bogus_key: unknown key") {
		t.Errorf("bad reload answered %d: %s", resp.StatusCode, body)
	}
	_, metrics = d.get(t, "/metrics")
	if !strings.Contains(metrics, "tokenwatch_config_last_reload_successful 0") || !strings.Contains(metrics, `org="seed-case"`) ||
		!strings.Contains(metrics, `tokenwatch_config_reloads_total{result="failure"} 1`) {
		t.Errorf("after a refused reload: want reload_successful 0 and the old orgs still exported")
	}

	// SIGHUP with a good config: one org removed, one added; the removed org's series vanish.
	f.writeConfig(t, `  - name: added-later
    url: `+f.org.URL()+`
    client: {id: all-app, secret: `+canaryIntroSecret+`}
    grant: {type: client_credentials}
`)
	cfg, _ := os.ReadFile(f.config)
	cfg = bytes.Replace(cfg, []byte("  - name: healthy-jwt\n"), []byte("  - name: renamed-jwt\n"), 1)
	if err := os.WriteFile(f.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, 20*time.Second, "the reloaded config to take effect", func() bool {
		_, metrics = d.get(t, "/metrics")
		return strings.Contains(metrics, `tokenwatch_check_success{org="added-later"} 1`) &&
			strings.Contains(metrics, `tokenwatch_check_success{org="renamed-jwt"} 1`) &&
			strings.Contains(metrics, "tokenwatch_config_last_reload_successful 1")
	})
	if strings.Contains(metrics, `org="healthy-jwt"`) {
		t.Errorf("series of a removed org are still exported")
	}

	d.stop(t)
	logs := d.logs.String()
	if !strings.Contains(logs, "org outcome changed") || !strings.Contains(logs, "introspection_not_permitted") {
		t.Errorf("the logs do not record the outcome changes:\n%.2000s", logs)
	}
	for where, text := range map[string]string{"logs": logs, "/metrics": metrics, "/api/v1/orgs": api, "status page": page, "/probe": probe} {
		f.assertNoSecrets(t, where, text)
	}
}

func promtoolCheckMetrics(t *testing.T, metrics string) {
	t.Helper()
	promtool := e2etest.Tool(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func runCommand(t *testing.T, f *fixture, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.Tokenwatch(t), args...)
	cmd.Env = f.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestDiagnose(t *testing.T) {
	f := newFixture(t)

	code, out, errOut := runCommand(t, f, "diagnose", "--config.file="+f.config, "--org=seed-case")
	if code != exitUnhealthy {
		t.Errorf("diagnose of the seed case exited %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"org seed-case (provider salesforce, grant password)",
		"1. token", "2. introspect", "3. probe", "4. revoke",
		"sent: grant_type=password, username, password, client_id, client_secret (values withheld)",
		"HTTP 200 in", "resolve", "processing",
		`answered {"active": false}`,
		"verdict:   UNHEALTHY, outcome introspection_not_permitted",
		"Introspect All Tokens", "session ids",
		"signature valid",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diagnose text lacks %q", want)
		}
	}
	f.assertNoSecrets(t, "diagnose text", out+errOut)

	code, out, errOut = runCommand(t, f, "diagnose", "--config.file="+f.config, "--org=healthy-cc", "--org=healthy-jwt", "--output=json")
	if code != exitOK {
		t.Errorf("diagnose of healthy orgs exited %d, want 0\n%s%s", code, out, errOut)
	}
	var doc struct {
		Orgs []struct {
			Org     string `json:"org"`
			Healthy bool   `json:"healthy"`
			Result  struct {
				Outcome string `json:"outcome"`
				Token   struct {
					Expiry string `json:"expiry"`
					Scope  string `json:"scope"`
				} `json:"token"`
			} `json:"result"`
		} `json:"orgs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("diagnose JSON: %v\n%s", err, out)
	}
	if len(doc.Orgs) != 2 || !doc.Orgs[0].Healthy || doc.Orgs[0].Result.Outcome != "ok" || doc.Orgs[0].Result.Token.Expiry == "" {
		t.Errorf("diagnose JSON: %+v", doc.Orgs)
	}
	f.assertNoSecrets(t, "diagnose json", out+errOut)

	// All orgs: the refresh-token org is left alone unless named, so its rotating token stays the daemon's.
	tokens := f.org.Requests(orgsim.EndpointToken)
	code, out, errOut = runCommand(t, f, "diagnose", "--config.file="+f.config)
	if code != exitUnhealthy || !strings.Contains(errOut, "org healthy-refresh skipped") || strings.Contains(out, "org healthy-refresh (") {
		t.Errorf("diagnose of all orgs: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := f.org.Requests(orgsim.EndpointToken) - tokens; got != 4 {
		t.Errorf("diagnose of all orgs made %d token requests, want 4 (the refresh-token org skipped)", got)
	}

	code, _, errOut = runCommand(t, f, "diagnose", "--config.file="+f.config, "--org=nope")
	if code != exitUsage || !strings.Contains(errOut, `no org named "nope"`) {
		t.Errorf("unknown org: exit %d, %s", code, errOut)
	}
	code, _, _ = runCommand(t, f, "diagnose", "--config.file="+f.config, "--output=yaml")
	if code != exitUsage {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

func TestCheckConfig(t *testing.T) {
	f := newFixture(t)
	code, out, errOut := runCommand(t, f, "check-config", "--config.file="+f.config)
	if code != 0 || !strings.Contains(out, "valid, 5 org(s)") {
		t.Errorf("valid config: exit %d: %s%s", code, out, errOut)
	}
	// Valid, but two orgs log in as one user every 2 s: 3,600 times an hour, four times the default budget.
	if want := "warning: orgs seed-case, separate-introspector log in as 127.0.0.1"; !strings.Contains(out, want) ||
		!strings.Contains(out, "integration@e2e.example about 3600 times an hour, more than global.login_budget (900)") {
		t.Errorf("check-config output lacks the login budget warning %q:\n%s", want, out)
	}
	// Every problem is listed with its path, and no secret value is echoed.
	f.writeConfig(t, `  - name: broken
    url: http://example.com
    client: {id: x, secret: `+canaryClientSecret+`, secret_file: nope}
    grant: {type: password}
`)
	code, out, errOut = runCommand(t, f, "check-config", "--config.file="+f.config)
	if code != 1 {
		t.Errorf("invalid config: exit %d, want 1", code)
	}
	for _, want := range []string{"orgs[5].url", "orgs[5].client", "orgs[5].grant.username", "orgs[5].grant.password"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check-config output lacks %s:\n%s", want, errOut)
		}
	}
	f.assertNoSecrets(t, "check-config output", out+errOut)
}

// sample reads the value of one series from an exposition.
func sample(metrics, series string) (float64, bool) {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err == nil
		}
	}
	return 0, false
}

// TestDemo runs `tokenwatch demo` as a newcomer would and reads its metrics:
// the seed case next to healthy orgs of every grant.
func TestDemo(t *testing.T) {
	addr := e2etest.FreeAddr(t)
	logs := &e2etest.Buffer{}
	cmd := exec.Command(e2etest.Tokenwatch(t), "demo", "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	d := &daemon{addr: addr}
	var metrics string
	e2etest.WaitFor(t, 20*time.Second, "the demo's first checks", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
		return strings.Count(metrics, "tokenwatch_check_success{") == 7
	})
	for _, want := range []string{
		`tokenwatch_checks_total{org="seed-password-grant",outcome="introspection_not_permitted"}`,
		`tokenwatch_check_success{org="acme-client-credentials"} 1`,
		`tokenwatch_check_success{org="acme-jwt-bearer"} 1`,
		`tokenwatch_check_success{org="acme-password-introspect-all"} 1`,
		`tokenwatch_check_success{org="acme-refresh-token"} 1`,
		`tokenwatch_check_success{org="slow-token-endpoint"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("demo metrics lack %s", want)
		}
	}
	if !strings.Contains(logs.String(), "status page   http://") {
		t.Errorf("the demo does not print where to look:\n%s", logs)
	}
	if code, page := d.get(t, "/"); code != 200 || !strings.Contains(page, "Introspect All Tokens") {
		t.Errorf("demo status page (%d) does not explain the seed case", code)
	}
}

// TestWebConfigBasicAuth protects every endpoint with the exporter-toolkit
// web configuration.
func TestWebConfigBasicAuth(t *testing.T) {
	f := newFixture(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(f.dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := e2etest.FreeAddr(t)
	cmd := exec.Command(e2etest.Tokenwatch(t), "--config.file="+f.config, "--web.listen-address="+addr, "--web.config.file="+webConfig, "--storage.path="+t.TempDir())
	cmd.Env = f.env()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	get := func(path, user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	e2etest.WaitFor(t, 20*time.Second, "the daemon to be ready", func() bool { return get("/-/ready", "prometheus", "scrape-password") == 200 })
	for _, path := range []string{"/metrics", "/api/v1/orgs", "/", "/probe?org=healthy-cc"} {
		if code := get(path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials answered %d, want 401", path, code)
		}
		if code := get(path, "prometheus", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password answered %d, want 401", path, code)
		}
		if code := get(path, "prometheus", "scrape-password"); code != http.StatusOK {
			t.Errorf("%s with credentials answered %d, want 200", path, code)
		}
	}
}
