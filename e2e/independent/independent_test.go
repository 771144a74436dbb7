package independent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

const (
	seedClientID    = "3MVG9seedCaseConsumerKey"
	fullClientID    = "3MVG9introspectAllConsumerKey"
	fullSecret      = "inline-full-app-secret-7f3a91" // inline in tokenwatch.yml
	ccClientID      = "3MVG9clientCredentialsKey"
	wrongSecret     = "stale-rotated-secret-0b1c2d" // inline in tokenwatch.yml
	seedUser        = "integration@seed.example.com"
	healthyUser     = "integration@healthy.example.com"
	ccRunAsUser     = "integration@cc.example.com"
	commandDeadline = 20 * time.Second
)

var orgNames = []string{"seed-case", "healthy-password", "healthy-cc", "wrong-secret"}

// fixture is everything one test run needs: the server, the binary, the
// config and the secret values that must never be printed.
type fixture struct {
	srv     *Server
	bin     string
	config  string
	env     []string
	secrets []string
	outputs []string // every stdout/stderr/metrics body seen, for the leak check
}

func TestTokenwatchAgainstIndependentServer(t *testing.T) {
	f := setup(t)

	t.Run("check-config", func(t *testing.T) {
		code, stdout, stderr := f.run(t, "check-config", "--config.file="+f.config)
		if code != 0 {
			t.Fatalf("check-config exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("diagnose-json", func(t *testing.T) {
		before := len(f.srv.IssuedTokens())
		code, stdout, stderr := f.run(t, "diagnose", "--config.file="+f.config, "--output=json")
		if code != 1 {
			t.Errorf("diagnose exit %d, want 1 (some unhealthy)\nstderr:\n%s", code, stderr)
		}
		doc := decodeJSONStream(t, stdout)
		want := map[string]string{
			"seed-case":        "introspection_not_permitted",
			"healthy-password": "ok",
			"healthy-cc":       "ok",
			"wrong-secret":     "client_rejected",
		}
		for _, org := range orgNames {
			got, ok := findOutcome(doc, org)
			if !ok {
				t.Errorf("org %q: no outcome found in diagnose JSON:\n%s", org, stdout)
				continue
			}
			if got != want[org] {
				t.Errorf("org %q: outcome %q, want %q", org, got, want[org])
			}
		}
		// Fresh mode: every token minted during the run is revoked by tokenwatch.
		minted := f.srv.IssuedTokens()[before:]
		if len(minted) != 3 {
			t.Errorf("server issued %d tokens during diagnose, want 3 (one per org that can get one)", len(minted))
		}
		for i, tok := range minted {
			if !f.srv.RevokedByClient(tok) {
				t.Errorf("token #%d minted during diagnose was not revoked", i)
			}
		}
		t.Logf("server requests so far: %s", f.srv.RequestSummary())
	})

	t.Run("diagnose-text-seed-case", func(t *testing.T) {
		code, stdout, stderr := f.run(t, "diagnose", "--config.file="+f.config, "--org", "seed-case")
		if code != 1 {
			t.Errorf("diagnose --org seed-case exit %d, want 1\nstderr:\n%s", code, stderr)
		}
		if !strings.Contains(stdout+stderr, "Introspect All Tokens") {
			t.Errorf("diagnose --org seed-case does not mention \"Introspect All Tokens\":\n%s\n%s", stdout, stderr)
		}
	})

	t.Run("daemon-metrics", func(t *testing.T) {
		f.daemon(t)
	})

	t.Run("dead-sessions-token-inactive", func(t *testing.T) {
		f.srv.BlockSessions(healthyUser, true)
		code, stdout, stderr := f.run(t, "diagnose", "--config.file="+f.config, "--org", "healthy-password", "--output=json")
		if code != 1 {
			t.Errorf("diagnose --org healthy-password exit %d, want 1\nstderr:\n%s", code, stderr)
		}
		got, ok := findOutcome(decodeJSONStream(t, stdout), "healthy-password")
		if !ok || got != "token_inactive" {
			t.Errorf("healthy-password with dead sessions: outcome %q (found=%v), want token_inactive\n%s", got, ok, stdout)
		}

		// Lift the block: the org is healthy again and diagnose exits 0.
		f.srv.BlockSessions(healthyUser, false)
		code, stdout, stderr = f.run(t, "diagnose", "--config.file="+f.config, "--org", "healthy-password", "--output=json")
		if code != 0 {
			t.Errorf("diagnose --org healthy-password after recovery exit %d, want 0\nstderr:\n%s", code, stderr)
		}
		got, ok = findOutcome(decodeJSONStream(t, stdout), "healthy-password")
		if !ok || got != "ok" {
			t.Errorf("healthy-password after recovery: outcome %q (found=%v), want ok", got, ok)
		}
	})

	t.Run("signature-mismatch", func(t *testing.T) {
		f.srv.CorruptSignatures(true)
		defer f.srv.CorruptSignatures(false)
		code, stdout, stderr := f.run(t, "diagnose", "--config.file="+f.config, "--org", "healthy-cc", "--output=json")
		if code != 1 {
			t.Errorf("diagnose --org healthy-cc with a bad signature exit %d, want 1\nstderr:\n%s", code, stderr)
		}
		got, ok := findOutcome(decodeJSONStream(t, stdout), "healthy-cc")
		if !ok || got != "signature_mismatch" {
			t.Errorf("healthy-cc with a bad signature: outcome %q (found=%v), want signature_mismatch", got, ok)
		}
		issued := f.srv.IssuedTokens()
		if last := issued[len(issued)-1]; !f.srv.RevokedByClient(last) {
			t.Errorf("token with a bad signature was not revoked")
		}
	})

	t.Run("config-errors", func(t *testing.T) {
		f.configErrors(t)
	})

	t.Run("no-secret-in-output", func(t *testing.T) {
		secrets := append([]string(nil), f.secrets...)
		for _, tok := range f.srv.IssuedTokens() {
			secrets = append(secrets, tok)
			if i := strings.IndexByte(tok, '!'); i >= 0 {
				secrets = append(secrets, tok[i+1:])
			}
		}
		if len(f.srv.IssuedTokens()) == 0 {
			t.Fatal("server issued no tokens at all")
		}
		for i, out := range f.outputs {
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("output #%d contains a secret or token (%d chars, starts %q)", i, len(s), s[:4])
				}
			}
		}
	})
	t.Logf("server requests: %s", f.srv.RequestSummary())
}

func setup(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	// Without the go command this skips (fails under CI=true); a build that
	// fails is a failure.
	bin := e2etest.Tokenwatch(t)

	srv := NewServer()
	t.Cleanup(srv.Close)

	seedClientSecret := "seed-file-secret-" + randomString(20, alnum)
	ccSecret := "cc-env-secret-" + randomString(20, alnum)
	seedPassword, seedSecToken := "SeedPw-"+randomString(10, alnum), "SEEDTOK"+randomString(12, alnum)
	healthyPassword, healthySecToken := "HealthyPw-"+randomString(10, alnum), "HLTTOK"+randomString(12, alnum)
	ccPassword := "CcPw-" + randomString(10, alnum)

	srv.AddUser(seedUser, seedPassword, seedSecToken)
	srv.AddUser(healthyUser, healthyPassword, healthySecToken)
	srv.AddUser(ccRunAsUser, ccPassword, "")
	srv.AddApp(App{ClientID: seedClientID, ClientSecret: seedClientSecret})
	srv.AddApp(App{ClientID: fullClientID, ClientSecret: fullSecret, IntrospectAll: true})
	srv.AddApp(App{ClientID: ccClientID, ClientSecret: ccSecret, RunAs: ccRunAsUser})

	secretDir := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, filepath.Join(secretDir, "seed-client-secret"), seedClientSecret+"\n")
	writeSecret(t, filepath.Join(secretDir, "healthy-password"), healthyPassword+healthySecToken+"\n")

	tmpl, err := os.ReadFile("tokenwatch.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(tmpl), "{{SERVER_URL}}", srv.URL())
	cfg = strings.ReplaceAll(cfg, "{{SECRET_DIR}}", secretDir)
	config := filepath.Join(dir, "tokenwatch.yml")
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	return &fixture{
		srv:    srv,
		bin:    bin,
		config: config,
		env: append(os.Environ(),
			"TWIND_SEED_PASSWORD="+seedPassword+seedSecToken,
			"TWIND_CC_SECRET="+ccSecret,
		),
		secrets: []string{
			seedClientSecret, ccSecret, fullSecret, wrongSecret,
			seedPassword, seedSecToken, healthyPassword, healthySecToken, ccPassword,
		},
	}
}

func writeSecret(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// run executes the binary and returns its exit code, stdout and stderr.
func (f *fixture) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = f.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	f.outputs = append(f.outputs, stdout.String(), stderr.String())
	code := 0
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("tokenwatch %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("tokenwatch %v did not finish within %s", args, commandDeadline)
	}
	return code, stdout.String(), stderr.String()
}

func (f *fixture) daemon(t *testing.T) {
	addr := e2etest.FreeAddr(t)
	cmd := exec.Command(f.bin, "--config.file="+f.config, "--web.listen-address="+addr, "--storage.path="+t.TempDir())
	cmd.Env = f.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		f.outputs = append(f.outputs, stdout.String(), stderr.String())
	}()

	client := &http.Client{Timeout: 3 * time.Second}
	var samples map[string]map[string]string // metric -> org -> value
	var body string
	var exitErr error
	all := e2etest.Poll(30*time.Second, func() bool {
		select {
		case exitErr = <-exited:
			stopped = true
			return true
		default:
		}
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		samples = parseOrgSamples(body)
		return len(samples["tokenwatch_check_success"]) >= len(orgNames)
	})
	switch {
	case stopped:
		t.Fatalf("daemon exited early: %v\nstderr:\n%s", exitErr, stderr.String())
	case !all:
		t.Fatalf("/metrics never showed tokenwatch_check_success for all orgs; last body:\n%s", body)
	}
	f.outputs = append(f.outputs, body)

	wantSuccess := map[string]string{"seed-case": "0", "healthy-password": "1", "healthy-cc": "1", "wrong-secret": "0"}
	for org, want := range wantSuccess {
		if got, ok := samples["tokenwatch_check_success"][org]; !ok || got != want {
			t.Errorf("tokenwatch_check_success{org=%q} = %q (present=%v), want %s", org, got, ok, want)
		}
	}
	wantActive := map[string]string{"seed-case": "0", "healthy-password": "1", "healthy-cc": "1"}
	for org, want := range wantActive {
		if got, ok := samples["tokenwatch_introspection_active"][org]; !ok || got != want {
			t.Errorf("tokenwatch_introspection_active{org=%q} = %q (present=%v), want %s", org, got, ok, want)
		}
	}
	// healthy-cc's token has only the api scope: its witness is the REST
	// API's limits resource, whose daily allowance is exported.
	if got := samples["tokenwatch_api_requests_max"]["healthy-cc"]; got != "15000" {
		t.Errorf("tokenwatch_api_requests_max{org=\"healthy-cc\"} = %q, want 15000", got)
	}
	if _, ok := samples["tokenwatch_api_requests_max"]["healthy-password"]; ok {
		t.Errorf("tokenwatch_api_requests_max for healthy-password, whose witness is userinfo")
	}
	// No token, so no introspection answer: the gauge must be absent.
	if got, ok := samples["tokenwatch_introspection_active"]["wrong-secret"]; ok {
		t.Errorf("tokenwatch_introspection_active{org=\"wrong-secret\"} = %s, want absent (no introspection answer)", got)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "tokenwatch_checks_total{") {
			t.Logf("metrics: %s", line)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("daemon after SIGTERM: %v, want exit 0\nstderr tail:\n%s", err, tail(stderr.String(), 20))
		}
	case <-time.After(10 * time.Second):
		t.Errorf("daemon did not exit within 10s of SIGTERM")
	}
}

// configErrors checks the check-config and diagnose exit codes and the field
// paths of the configuration reference on broken variants of the working config.
func (f *fixture) configErrors(t *testing.T) {
	good, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(f.config)
	cases := []struct {
		name, from, to, wantPath string
	}{
		{"unknown-key", "    probe: userinfo\n", "    probe: userinfo\n    probe_interval: 5s\n", "orgs[0].probe_interval"},
		{"missing-password-file", "/healthy-password\n", "/no-such-file\n", "orgs[1].grant.password_file"},
		{"unset-env", "${TWIND_CC_SECRET}", "${TWIND_UNSET_VARIABLE}", "orgs[2].client.secret"},
		{"plain-http-remote", "url: " + f.srv.URL(), "url: http://192.0.2.55:8080", "orgs[0].url"},
	}
	for _, c := range cases {
		bad := strings.Replace(string(good), c.from, c.to, 1)
		if bad == string(good) {
			t.Fatalf("%s: replacement did not apply", c.name)
		}
		path := filepath.Join(dir, c.name+".yml")
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := f.run(t, "check-config", "--config.file="+path)
		if code != 1 {
			t.Errorf("%s: check-config exit %d, want 1", c.name, code)
		}
		if !strings.Contains(stdout+stderr, c.wantPath) {
			t.Errorf("%s: check-config does not name %s:\n%s%s", c.name, c.wantPath, stdout, stderr)
		}
		if code, _, _ := f.run(t, "diagnose", "--config.file="+path); code != 2 {
			t.Errorf("%s: diagnose exit %d, want 2 (config error)", c.name, code)
		}
	}
	if code, _, _ := f.run(t, "diagnose", "--config.file="+f.config, "--org", "no-such-org"); code != 2 {
		t.Errorf("diagnose --org no-such-org exit %d, want 2 (usage error)", code)
	}
}

var (
	sampleRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s+(\S+)`)
	labelRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// parseOrgSamples maps metric name -> org label -> value for the text format.
func parseOrgSamples(body string) map[string]map[string]string {
	out := map[string]map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		m := sampleRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		for _, l := range labelRe.FindAllStringSubmatch(m[2], -1) {
			if l[1] == "org" {
				if out[m[1]] == nil {
					out[m[1]] = map[string]string{}
				}
				v := m[3]
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					v = strconv.FormatFloat(f, 'g', -1, 64)
				}
				out[m[1]][l[2]] = v
			}
		}
	}
	return out
}

// decodeJSONStream reads one JSON document or a stream of them (NDJSON).
func decodeJSONStream(t *testing.T, s string) []any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("diagnose --output=json is not JSON: %v\n%s", err, s)
		}
		docs = append(docs, v)
	}
	if len(docs) == 0 {
		t.Fatalf("diagnose --output=json printed nothing")
	}
	return docs
}

// findOutcome looks, breadth first, for the object describing org (an object
// whose "org" or "name" is the org, or the value under a key equal to the
// org's name) and returns the nearest string member named "outcome" in it.
func findOutcome(doc any, org string) (string, bool) {
	queue := []any{doc}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		switch x := v.(type) {
		case map[string]any:
			if x["org"] == org || x["name"] == org {
				if o, ok := nearestString(x, "outcome"); ok {
					return o, true
				}
			}
			if sub, ok := x[org]; ok {
				if o, ok := nearestString(sub, "outcome"); ok {
					return o, true
				}
			}
			for _, c := range x {
				queue = append(queue, c)
			}
		case []any:
			queue = append(queue, x...)
		}
	}
	return "", false
}

func nearestString(v any, key string) (string, bool) {
	queue := []any{v}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		switch x := cur.(type) {
		case map[string]any:
			if s, ok := x[key].(string); ok {
				return s, true
			}
			for _, c := range x {
				queue = append(queue, c)
			}
		case []any:
			queue = append(queue, x...)
		}
	}
	return "", false
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
