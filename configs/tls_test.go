package configs

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tlsServer is a real TLS server that demands a client certificate, as an
// mTLS authorization server does, and answers the CN it saw; caFile holds
// its certificate.
func tlsServer(t *testing.T) (srv *httptest.Server, caFile string) {
	t.Helper()
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	// Refused handshakes are expected; keep them out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// get sends one request over the org's transport.
func get(t *testing.T, o Org, url string) (string, error) {
	t.Helper()
	rt, err := o.Transport()
	if err != nil {
		t.Fatalf("Transport: %v", err)
	}
	resp, err := (&http.Client{Transport: rt}).Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return string(body), nil
}

func orgWithTLS(t *testing.T, srvURL, tlsYAML string) Org {
	t.Helper()
	dir, _ := filepath.Abs("testdata")
	cfg, err := Parse([]byte(`orgs:
  - name: mtls
    provider: generic
    token_url: `+srvURL+`/token
    client: {id: c, auth_method: tls_client_auth}
    grant: {type: client_credentials}
    tls: `+tlsYAML+`
`), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Orgs[0]
}

// The org's tls: keys reach a real mTLS server through the transport built
// from them (prometheus/common's HTTP client settings).
func TestOrgTLSConnects(t *testing.T) {
	srv, caFile := tlsServer(t)
	for _, tc := range []struct {
		name    string
		tls     string
		want    string // the client certificate's CN the server saw
		wantErr string
	}{
		{name: "CA and client certificate", tls: `{ca_file: ` + caFile + `, cert_file: client.crt, key_file: rsa-pkcs8.key}`, want: "tokenwatch-test-client"},
		{name: "server name checked against the certificate", tls: `{ca_file: ` + caFile + `, cert_file: client.crt, key_file: rsa-pkcs8.key, server_name: example.com}`, want: "tokenwatch-test-client"},
		{name: "wrong server name refused", tls: `{ca_file: ` + caFile + `, cert_file: client.crt, key_file: rsa-pkcs8.key, server_name: idp.internal}`, wantErr: "certificate is valid for"},
		{name: "system roots do not trust the test CA", tls: `{cert_file: client.crt, key_file: rsa-pkcs8.key}`, wantErr: "certificate signed by unknown authority"},
		{name: "insecure_skip_verify", tls: `{insecure_skip_verify: true, cert_file: client.crt, key_file: rsa-pkcs8.key}`, want: "tokenwatch-test-client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := get(t, orgWithTLS(t, srv.URL, tc.tls), srv.URL)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("GET error = %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("GET: %v", err)
			case body != tc.want:
				t.Errorf("server saw client certificate %q, want %q", body, tc.want)
			}
		})
	}
}

// A renewed CA file is read again by the running transport: no reload needed.
func TestRenewedCAFileNeedsNoReload(t *testing.T) {
	srv, caFile := tlsServer(t)
	good, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	// Another CA (httptest servers all share one certificate): the client's own.
	wrong, err := os.ReadFile(filepath.Join("testdata", "client.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, wrong, 0o600); err != nil {
		t.Fatal(err)
	}
	o := orgWithTLS(t, srv.URL, `{ca_file: `+caFile+`, cert_file: client.crt, key_file: rsa-pkcs8.key}`)
	rt, err := o.Transport()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: rt}
	if resp, err := client.Get(srv.URL); err == nil {
		_ = resp.Body.Close()
		t.Fatal("a CA file of another server was trusted")
	}
	if err := os.WriteFile(caFile, good, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("after the CA file was renewed, the same transport still fails: %v", err)
	}
	_ = resp.Body.Close()
}

// Proxy settings: proxy_url sends the requests through the proxy; without
// it the environment's proxies apply, as before.
func TestOrgProxy(t *testing.T) {
	var proxied string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied = r.URL.String()
		fmt.Fprint(w, "via proxy")
	}))
	t.Cleanup(proxy.Close)
	dir, _ := filepath.Abs("testdata")
	cfg, err := Parse([]byte(`orgs:
  - name: behind-proxy
    provider: generic
    token_url: https://idp.example.com/token
    client: {id: c, secret: s}
    grant: {type: client_credentials}
    proxy_url: `+proxy.URL+`
  - name: from-env
    provider: generic
    token_url: https://idp.example.com/token
    client: {id: c, secret: s}
    grant: {type: client_credentials}
`), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := get(t, cfg.Orgs[0], "http://idp.example.com/token")
	if err != nil || body != "via proxy" || proxied != "http://idp.example.com/token" {
		t.Fatalf("through proxy_url: body %q, err %v, proxy saw %q", body, err, proxied)
	}
	if !cfg.Orgs[1].HTTPClient.ProxyFromEnvironment || cfg.Orgs[0].HTTPClient.ProxyFromEnvironment {
		t.Errorf("proxy_from_environment: %v without proxy_url (want true), %v with it (want false)",
			cfg.Orgs[1].HTTPClient.ProxyFromEnvironment, cfg.Orgs[0].HTTPClient.ProxyFromEnvironment)
	}
}
