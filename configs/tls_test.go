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

// TestTLSBuildConnects checks the built config against a real TLS server
// that demands a client certificate, as an mTLS authorization server does.
func TestTLSBuildConnects(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	// Refused handshakes are expected below; keep them out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clientCert := filepath.Join("testdata", "client.crt")
	clientKey := filepath.Join("testdata", "rsa-pkcs8.key")

	for _, tc := range []struct {
		name    string
		tls     TLS
		want    string // response body, i.e. the client certificate's CN the server saw
		wantErr string
	}{
		{name: "CA and client certificate", tls: TLS{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey}, want: "tokenwatch-test-client"},
		{name: "server name checked against the certificate", tls: TLS{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "example.com"}, want: "tokenwatch-test-client"},
		{name: "wrong server name refused", tls: TLS{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "idp.internal"}, wantErr: "certificate is valid for"},
		{name: "system roots do not trust the test CA", tls: TLS{CertFile: clientCert, KeyFile: clientKey}, wantErr: "certificate signed by unknown authority"},
		{name: "insecure_skip_verify", tls: TLS{InsecureSkipVerify: true, CertFile: clientCert, KeyFile: clientKey}, want: "tokenwatch-test-client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.tls.Build()
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
			resp, err := client.Get(srv.URL)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("GET error = %v, want %q", err, tc.wantErr)
				}
				if resp != nil {
					_ = resp.Body.Close()
				}
				return
			}
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tc.want {
				t.Errorf("server saw client certificate %q, want %q", body, tc.want)
			}
		})
	}
}

func TestTLSBuildDefaultsAndErrors(t *testing.T) {
	cfg, err := TLS{}.Build()
	if err != nil || cfg == nil {
		t.Fatalf("Build of empty settings = %v, %v; want a usable config", cfg, err)
	}
	if cfg.MinVersion < tls.VersionTLS12 || cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.InsecureSkipVerify {
		t.Errorf("empty settings built %+v, want system roots, TLS 1.2+, no client certificate", cfg)
	}

	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		tls  TLS
		want string
	}{
		{"missing CA file", TLS{CAFile: missing}, "tls.ca_file: cannot read: open " + missing},
		{"cert without key", TLS{CertFile: filepath.Join("testdata", "client.crt")}, "tls.key_file: required when tls.cert_file is set"},
		{"unreadable key", TLS{CertFile: filepath.Join("testdata", "client.crt"), KeyFile: missing}, "tls.key_file: cannot read: open " + missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tls.Build()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Build error = %v, want it to start with %q", err, tc.want)
			}
		})
	}
}
