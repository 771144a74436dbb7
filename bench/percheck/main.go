// Command percheck measures the CPU time one whole tokenwatch check costs
// the client (checks.Checker.Check: token, introspect, userinfo, revoke)
// next to a minimal net/http client making the same four requests and
// nothing else, against ORY Hydra and against the simulated Salesforce org
// (internal/orgsim), each served by another process. See README.md.
//
//	go run ./bench/percheck                       # both servers, both connection modes
//	go run ./bench/percheck -servers orgsim -n 1000
//	go run ./bench/percheck -profile tokenwatch -servers orgsim -cpuprofile /tmp/cpu.out -memprofile /tmp/mem.out
//
// The client's cost is the process's own CPU time (getrusage RUSAGE_SELF:
// user + system, all threads, the garbage collector included); the servers
// run in child processes, so none of their work is counted. Clients run in
// blocks of -n checks that alternate between the clients, -rounds times, so
// drift of a shared machine spreads over all of them; the ratio is taken
// from the sums over all blocks of one run.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

func main() {
	n := flag.Int("n", 400, "checks per block")
	rounds := flag.Int("rounds", 5, "blocks per client and mode; the clients alternate between blocks")
	warmup := flag.Int("warmup", 30, "unmeasured checks per client first (connections, Hydra's first keys)")
	servers := flag.String("servers", "hydra,orgsim", "servers to run against, in order: hydra, orgsim, orgsim-tls")
	modes := flag.String("conn", "kept,per-check", "connection modes: kept (one keep-alive connection across checks), "+
		"per-check (a check opens its connection and closes it after its four requests)")
	hydraBin := flag.String("hydra", "", "ORY Hydra binary (default: $HYDRA_BIN, then the path in /tmp/hydra.path, then scripts/build-hydra.sh's cache)")
	profile := flag.String("profile", "", "profile one client only (tokenwatch, tokenwatch-prom or minimal) on the first server and mode, n x rounds checks")
	cpuprofile := flag.String("cpuprofile", "", "with -profile: write a CPU profile")
	memprofile := flag.String("memprofile", "", "with -profile: write an allocation profile (every allocation sampled)")
	blackbox := flag.String("blackbox", "prometheus-blackbox-exporter", "blackbox_exporter binary, timed against Hydra when found (Debian package prometheus-blackbox-exporter); empty: skip")
	serveOrgsim := flag.String("serve-orgsim", "", "internal: serve a simulated org (http or https) until stdin closes")
	flag.Parse()

	if *serveOrgsim != "" {
		if err := serveOrg(*serveOrgsim == "https"); err != nil {
			fmt.Fprintln(os.Stderr, "percheck:", err)
			os.Exit(1)
		}
		return
	}
	if *profile != "" {
		*blackbox = ""
	}
	if err := run(*n, *rounds, *warmup, split(*servers), split(*modes), *hydraBin, *blackbox, *profile, *cpuprofile, *memprofile); err != nil {
		fmt.Fprintln(os.Stderr, "percheck:", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// server is an authorization server in a child process and how each client reaches it.
type server struct {
	name   string
	pid    int
	stop   func()
	target checks.Target
	min    minimalSpec
	// roots and certPEM trust the server's certificate (https only).
	roots   *x509.CertPool
	certPEM string
}

// minimalSpec is what the minimal client sends: the same four requests as the check.
type minimalSpec struct {
	token, introspect, userinfo, revoke string
	// tokenForm and revokeForm carry client authentication in the body
	// (client_secret_post) unless basicID is set (client_secret_basic).
	tokenForm, introspectForm, revokeForm url.Values
	basicID, basicSecret                  string
}

func run(n, rounds, warmup int, serverNames, modes []string, hydraBin, blackbox, profile, cpuprofile, memprofile string) error {
	if profile != "" {
		serverNames, modes = serverNames[:1], modes[:1]
	}
	if memprofile != "" {
		runtime.MemProfileRate = 1
	}
	fmt.Printf("# percheck: client CPU per check, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("machine: %d CPUs, %s, %s, %s; n=%d checks per block, %d blocks per row\n\n",
		runtime.NumCPU(), cpuModel(), kernel(), runtime.Version(), n, rounds)
	for _, name := range serverNames {
		var s *server
		var err error
		switch name {
		case "hydra":
			s, err = startHydra(hydraBin)
		case "orgsim", "orgsim-tls":
			s, err = startOrgsim(name == "orgsim-tls")
		default:
			err = fmt.Errorf("unknown server %q", name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		err = measure(s, n, rounds, warmup, modes, profile, cpuprofile, memprofile)
		if err == nil && name == "hydra" && blackbox != "" {
			err = measureBlackbox(s, blackbox, n, rounds, warmup)
		}
		s.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// client is one way of making a whole check.
type client struct {
	name  string
	check func(context.Context) error
	// closeIdle ends the connections the client keeps (mode per-check).
	closeIdle func()
	// measured sums over the blocks.
	cpu, wall   time.Duration
	checks, gcs int
	allocBytes  uint64
}

func clients(s *server) ([]*client, error) {
	newTransport := func() *http.Transport {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 4
		if s.roots != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: s.roots}
		}
		return tr
	}
	tw := checks.NewChecker(s.target, checks.WithTransport(newTransport()))
	// The daemon's transport: prometheus/common's round tripper from the
	// org's HTTP client settings (configs.Org.Transport), defaults only.
	pcfg := promconfig.HTTPClientConfig{EnableHTTP2: true, TLSConfig: promconfig.TLSConfig{MinVersion: tls.VersionTLS12},
		ProxyConfig: promconfig.ProxyConfig{ProxyFromEnvironment: true}}
	pcfg.TLSConfig.CA = s.certPEM
	prt, err := promconfig.NewRoundTripperFromConfig(pcfg, "tokenwatch-percheck")
	if err != nil {
		return nil, err
	}
	twp := checks.NewChecker(s.target, checks.WithTransport(prt))
	checkTW := func(c *checks.Checker) func(context.Context) error {
		return func(ctx context.Context) error {
			// As the agent runs a check: bounded by the org's timeout.
			ctx, cancel := context.WithTimeout(ctx, s.target.Timeout)
			defer cancel()
			res := c.Check(ctx)
			if res.Outcome != checks.OutcomeOK {
				return fmt.Errorf("outcome %s: %s", res.Outcome, res.Explanation)
			}
			return nil
		}
	}
	m := &minimal{spec: s.min, http: &http.Client{Transport: newTransport()}}
	return []*client{
		{name: "minimal", check: m.check, closeIdle: m.http.CloseIdleConnections},
		{name: "tokenwatch", check: checkTW(tw), closeIdle: func() { tw.Close(context.Background()) }},
		{name: "tokenwatch-prom", check: checkTW(twp), closeIdle: func() { twp.Close(context.Background()) }},
	}, nil
}

func measure(s *server, n, rounds, warmup int, modes []string, profile, cpuprofile, memprofile string) error {
	ctx := context.Background()
	fmt.Printf("## %s\n\n", s.name)
	for _, mode := range modes {
		if mode != "kept" && mode != "per-check" {
			return fmt.Errorf("unknown connection mode %q", mode)
		}
		cs, err := clients(s)
		if err != nil {
			return err
		}
		if profile != "" {
			i := slices.IndexFunc(cs, func(c *client) bool { return c.name == profile })
			if i < 0 {
				return fmt.Errorf("no client %q to profile", profile)
			}
			cs = cs[i : i+1]
		}
		for _, c := range cs {
			for range warmup {
				if err := c.check(ctx); err != nil {
					return fmt.Errorf("%s warm-up: %w", c.name, err)
				}
				if mode == "per-check" {
					c.closeIdle()
				}
			}
		}
		if profile != "" && cpuprofile != "" {
			f, err := os.Create(cpuprofile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		serverCPU := map[string]time.Duration{}
		for range rounds {
			for _, c := range cs {
				runtime.GC()
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				sv0 := procCPU(s.pid)
				cpu0, t0 := selfCPU(), time.Now()
				for range n {
					if err := c.check(ctx); err != nil {
						return fmt.Errorf("%s: %w", c.name, err)
					}
					if mode == "per-check" {
						c.closeIdle()
					}
				}
				// The block pays for collecting all of its garbage.
				runtime.GC()
				c.cpu += selfCPU() - cpu0
				c.wall += time.Since(t0)
				serverCPU[c.name] += procCPU(s.pid) - sv0
				runtime.ReadMemStats(&ms1)
				c.checks += n
				c.gcs += int(ms1.NumGC - ms0.NumGC)
				c.allocBytes += ms1.TotalAlloc - ms0.TotalAlloc
			}
		}
		if profile != "" && memprofile != "" {
			f, err := os.Create(memprofile)
			if err != nil {
				return err
			}
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				return err
			}
			f.Close()
		}
		fmt.Printf("connections: %s\n\n", describeMode(mode))
		fmt.Println("| client | CPU per check | ratio to minimal | wall per check | allocated per check | server CPU per check |")
		fmt.Println("| --- | --- | --- | --- | --- | --- |")
		base := cs[0].cpu / time.Duration(cs[0].checks)
		for _, c := range cs {
			per := c.cpu / time.Duration(c.checks)
			fmt.Printf("| %s | %s | %.2fx | %s | %.1f KiB | %s |\n", c.name, us(per), float64(per)/float64(base),
				us(c.wall/time.Duration(c.checks)), float64(c.allocBytes)/float64(c.checks)/1024,
				us(serverCPU[c.name]/time.Duration(c.checks)))
		}
		fmt.Println()
	}
	return nil
}

func describeMode(mode string) string {
	if mode == "kept" {
		return "kept (one keep-alive connection per host, reused across checks)"
	}
	return "per-check (keep-alive within a check; idle connections closed after each check, so every check connects)"
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// selfCPU is the CPU time of this process: user + system, every thread.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time of another process from /proc (clock ticks, 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return runtime.GOOS
	}
	str := func(a [65]int8) string {
		b := make([]byte, 0, len(a))
		for _, c := range a {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		return string(b)
	}
	return str(u.Sysname) + " " + str(u.Release)
}

// minimal is the reference: plain net/http, one keep-alive connection per
// host, the four requests and nothing else (the access token is the only
// thing read from an answer; the other bodies are read and dropped).
type minimal struct {
	spec minimalSpec
	http *http.Client
}

func (m *minimal) check(ctx context.Context) error {
	s := &m.spec
	body, err := m.do(ctx, http.MethodPost, s.token, s.tokenForm, "", true)
	if err != nil {
		return err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return fmt.Errorf("token: no access token")
	}
	in := url.Values{"token": {tok.AccessToken}}
	for k, v := range s.introspectForm {
		in[k] = v
	}
	if _, err := m.do(ctx, http.MethodPost, s.introspect, in, "", false); err != nil {
		return err
	}
	if _, err := m.do(ctx, http.MethodGet, s.userinfo, nil, tok.AccessToken, false); err != nil {
		return err
	}
	rv := url.Values{"token": {tok.AccessToken}}
	for k, v := range s.revokeForm {
		rv[k] = v
	}
	_, err = m.do(ctx, http.MethodPost, s.revoke, rv, "", true)
	return err
}

func (m *minimal) do(ctx context.Context, method, u string, form url.Values, bearer string, basic bool) ([]byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if basic && m.spec.basicID != "" {
		req.SetBasicAuth(m.spec.basicID, m.spec.basicSecret)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s answered %d", method, u, resp.StatusCode)
	}
	return b, nil
}

// --- blackbox_exporter, in a child process -----------------------------------------

// measureBlackbox times blackbox_exporter's oauth2 module against Hydra
// (bench/blackbox's oauth2_userinfo module: a token, then GET userinfo with
// it; a new HTTP client, so new connections, for every probe) next to the
// same two requests made by the minimal client and by a check configured
// with only a token and a userinfo endpoint, both opening their
// connections for every check as blackbox does.
func measureBlackbox(s *server, bin string, n, rounds, warmup int) error {
	path, err := exec.LookPath(bin)
	if err != nil {
		fmt.Printf("blackbox_exporter: %s not found, skipped (apt-get install prometheus-blackbox-exporter)\n\n", bin)
		return nil
	}
	dir, err := os.MkdirTemp("", "percheck-blackbox")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secret := string(s.target.Client.Secret)
	cfg := fmt.Sprintf("modules:\n  oauth2_userinfo:\n    prober: http\n    timeout: 10s\n    http:\n      method: GET\n"+
		"      valid_status_codes: [200]\n      oauth2:\n        client_id: %s\n        client_secret: %q\n        token_url: %s\n        scopes: [read]\n",
		s.target.Client.ID, secret, s.target.Endpoints.Token)
	if err := os.WriteFile(filepath.Join(dir, "blackbox.yml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "blackbox.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(path, "--config.file="+filepath.Join(dir, "blackbox.yml"), "--web.listen-address=127.0.0.1:"+port)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	base := "http://127.0.0.1:" + port
	probeURL := base + "/probe?module=oauth2_userinfo&target=" + url.QueryEscape(s.target.Endpoints.Userinfo)
	hc := &http.Client{Timeout: 30 * time.Second}
	probe := func(context.Context) error {
		resp, err := hc.Get(probeURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "\nprobe_success 1") {
			return errors.New("blackbox probe failed")
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(base + "/-/healthy")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return errors.New("blackbox_exporter not healthy within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	two := s.target
	two.Endpoints = checks.Endpoints{Token: s.target.Endpoints.Token, Userinfo: s.target.Endpoints.Userinfo}
	two.Introspection = checks.Introspection{}
	tw := checks.NewChecker(two, checks.WithTransport(http.DefaultTransport.(*http.Transport).Clone()))
	spec := s.min
	m := &minimal{spec: spec, http: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	minimalTwo := func(ctx context.Context) error {
		body, err := m.do(ctx, http.MethodPost, spec.token, spec.tokenForm, "", true)
		if err != nil {
			return err
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
			return errors.New("token: no access token")
		}
		_, err = m.do(ctx, http.MethodGet, spec.userinfo, nil, tok.AccessToken, false)
		return err
	}
	type row struct {
		name   string
		check  func(context.Context) error
		close  func()
		pid    int // whose CPU counts: 0 for this process
		cpu    time.Duration
		probes int
	}
	rows := []*row{
		{name: "minimal: token + userinfo", check: minimalTwo, close: m.http.CloseIdleConnections},
		{name: "tokenwatch: token + userinfo", check: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, two.Timeout)
			defer cancel()
			if res := tw.Check(ctx); res.Outcome != checks.OutcomeOK {
				return fmt.Errorf("outcome %s: %s", res.Outcome, res.Explanation)
			}
			return nil
		}, close: func() { tw.Close(context.Background()) }},
		{name: "blackbox_exporter oauth2 module (its process; /probe served and answered)", check: probe, close: func() {}, pid: cmd.Process.Pid},
	}
	ctx := context.Background()
	for _, r := range rows {
		for range warmup {
			if err := r.check(ctx); err != nil {
				return fmt.Errorf("%s warm-up: %w", r.name, err)
			}
			r.close()
		}
	}
	for range rounds {
		for _, r := range rows {
			runtime.GC()
			c0 := selfCPU()
			if r.pid != 0 {
				c0 = procCPU(r.pid)
			}
			for range n {
				if err := r.check(ctx); err != nil {
					return fmt.Errorf("%s: %w", r.name, err)
				}
				r.close()
			}
			if r.pid != 0 {
				r.cpu += procCPU(r.pid) - c0
			} else {
				runtime.GC()
				r.cpu += selfCPU() - c0
			}
			r.probes += n
		}
	}
	version, _ := exec.Command(path, "--version").CombinedOutput()
	fmt.Printf("%s; two requests per probe, connections opened for every probe by all three\n\n",
		strings.TrimSpace(strings.SplitN(string(version), "\n", 2)[0]))
	fmt.Println("| client | CPU per probe | ratio to minimal |")
	fmt.Println("| --- | --- | --- |")
	base0 := rows[0].cpu / time.Duration(rows[0].probes)
	for _, r := range rows {
		per := r.cpu / time.Duration(r.probes)
		fmt.Printf("| %s | %s | %.2fx |\n", r.name, us(per), float64(per)/float64(base0))
	}
	fmt.Println()
	return nil
}

// --- the simulated org, in a child process -----------------------------------

const (
	orgClientID     = "percheck-app"
	orgClientSecret = "percheck-secret-not-a-real-one"
)

// serveOrg runs in the child: it serves one simulated org, prints its URL
// (and certificate) as one JSON line and serves until stdin closes.
func serveOrg(useTLS bool) error {
	org := orgsim.New(orgsim.Options{})
	org.AddUser(orgsim.User{Username: "integration@percheck.example", Password: "x"})
	org.AddApp(orgsim.App{ClientID: orgClientID, ClientSecret: orgClientSecret, RunAsUser: "integration@percheck.example", Scope: "api id"})
	start := org.Start
	if useTLS {
		start = org.StartTLS
	}
	if err := start(); err != nil {
		return err
	}
	defer org.Close()
	hello := struct {
		URL  string `json:"url"`
		Cert string `json:"cert,omitempty"`
	}{URL: org.URL()}
	if c := org.Certificate(); c != nil {
		hello.Cert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	if err := json.NewEncoder(os.Stdout).Encode(hello); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

func startOrgsim(useTLS bool) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	cmd := exec.Command(self, "-serve-orgsim", scheme)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() { stdin.Close(); _ = cmd.Wait() }
	var hello struct{ URL, Cert string }
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &hello)
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("simulated org did not start: %w", err)
	}
	s := &server{name: "orgsim (simulated Salesforce org, " + scheme + ", separate process)", pid: cmd.Process.Pid, stop: stop}
	if hello.Cert != "" {
		s.roots, s.certPEM = x509.NewCertPool(), hello.Cert
		if !s.roots.AppendCertsFromPEM([]byte(hello.Cert)) {
			stop()
			return nil, errors.New("unreadable certificate from the simulated org")
		}
	}
	// As configs builds it for `provider: salesforce` with a client secret:
	// client_secret_post, userinfo probe, signature verified, token_type_hint access_token.
	s.target = checks.Target{
		Name: "percheck", Provider: checks.ProviderSalesforce, URL: hello.URL, Timeout: 10 * time.Second,
		Client:          checks.Client{ID: orgClientID, Secret: orgClientSecret, AuthMethod: checks.AuthClientSecretPost},
		Grant:           checks.Grant{Type: checks.GrantClientCredentials},
		Introspection:   checks.Introspection{TokenTypeHint: checks.HintAccessToken},
		Probe:           checks.ProbeUserinfo,
		TokenMode:       checks.TokenModeFresh,
		VerifySignature: true,
	}
	auth := url.Values{"client_id": {orgClientID}, "client_secret": {orgClientSecret}}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range auth {
			out[k] = vs
		}
		for k, vs := range v {
			out[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	base := hello.URL + "/services/oauth2/"
	s.min = minimalSpec{
		token: base + "token", introspect: base + "introspect", userinfo: base + "userinfo", revoke: base + "revoke",
		tokenForm:      with(nil, "grant_type", "client_credentials"),
		introspectForm: with(nil, "token_type_hint", "access_token"),
		revokeForm:     with(nil, "token_type_hint", "access_token"),
	}
	return s, nil
}

// --- ORY Hydra, in a child process ---------------------------------------------

func hydraPath(flagValue string) (string, error) {
	candidates := []string{flagValue, os.Getenv("HYDRA_BIN")}
	if b, err := os.ReadFile("/tmp/hydra.path"); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(b)))
	}
	if cache, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(cache, "tokenwatch", "hydra-v2.3.0", "hydra"))
	}
	for _, p := range candidates {
		if fi, err := os.Stat(p); p != "" && err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("no ORY Hydra binary: build it with scripts/build-hydra.sh or pass -hydra")
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startHydra runs `hydra serve all` with an in-memory database, as
// e2e/hydra does, and registers one client_credentials client.
func startHydra(flagValue string) (*server, error) {
	bin, err := hydraPath(flagValue)
	if err != nil {
		return nil, err
	}
	pub, err := freePort()
	if err != nil {
		return nil, err
	}
	adm, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "percheck-hydra")
	if err != nil {
		return nil, err
	}
	public, admin := "http://127.0.0.1:"+pub, "http://127.0.0.1:"+adm
	cfg := fmt.Sprintf("dsn: memory\nserve:\n  public: {host: 127.0.0.1, port: %s}\n  admin: {host: 127.0.0.1, port: %s}\n"+
		"urls:\n  self: {issuer: %s, public: %s}\nsecrets:\n  system: [%q]\nlog: {level: warn}\n", pub, adm, public, public, randomHex(16))
	if err := os.WriteFile(filepath.Join(dir, "hydra.yml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "hydra.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "-c", filepath.Join(dir, "hydra.yml"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		os.RemoveAll(dir)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, base := range []string{public, admin} {
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := hc.Get(base + "/health/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-exited:
				stop()
				return nil, errors.New("hydra exited before it was ready (see its log: run with a fixed -hydra to debug)")
			default:
			}
			if time.Now().After(deadline) {
				stop()
				return nil, fmt.Errorf("hydra not ready within 60s at %s", base)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	id, secret := "percheck-cc", randomHex(16)
	reg, _ := json.Marshal(map[string]any{"client_id": id, "client_secret": secret, "grant_types": []string{"client_credentials"},
		"scope": "read", "token_endpoint_auth_method": "client_secret_basic"})
	resp, err := hc.Post(admin+"/admin/clients", "application/json", strings.NewReader(string(reg)))
	if err != nil {
		stop()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		stop()
		return nil, fmt.Errorf("registering the client answered %d", resp.StatusCode)
	}
	s := &server{name: "ORY Hydra v2.3.0 (memory DSN, http, separate process)", pid: cmd.Process.Pid, stop: stop}
	// As bench/blackbox's hydra-full org: introspection at the admin port,
	// which wants no client authentication (a client id only).
	s.target = checks.Target{
		Name: "percheck", Provider: checks.ProviderGeneric, Timeout: 10 * time.Second,
		Endpoints: checks.Endpoints{Token: public + "/oauth2/token", Introspection: admin + "/admin/oauth2/introspect",
			Revocation: public + "/oauth2/revoke", Userinfo: public + "/userinfo"},
		Client:        checks.Client{ID: id, Secret: checks.Secret(secret), AuthMethod: checks.AuthClientSecretBasic},
		Grant:         checks.Grant{Type: checks.GrantClientCredentials, Scope: "read"},
		Introspection: checks.Introspection{TokenTypeHint: checks.HintAccessToken, Client: &checks.Client{ID: "hydra-admin", AuthMethod: checks.AuthNone}},
		Probe:         checks.ProbeUserinfo,
		TokenMode:     checks.TokenModeFresh,
	}
	s.min = minimalSpec{
		token: public + "/oauth2/token", introspect: admin + "/admin/oauth2/introspect", userinfo: public + "/userinfo", revoke: public + "/oauth2/revoke",
		tokenForm:      url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}},
		introspectForm: url.Values{"token_type_hint": {"access_token"}, "client_id": {"hydra-admin"}},
		revokeForm:     url.Values{"token_type_hint": {"access_token"}},
		basicID:        id, basicSecret: secret,
	}
	return s, nil
}
