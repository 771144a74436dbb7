package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// The binary links no test helpers: the demo serves its simulated orgs with
// a plain http.Server, not net/http/httptest (whose flags and test servers
// have no place in production).
func TestBinaryLinksNoTestPackages(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		e2etest.Missing(t, "the go command", "put the Go toolchain on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/tokenwatch/tokenwatch/cmd/tokenwatch").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "net/http/httptest" || strings.HasSuffix(pkg, "/internal/fakeclock") || strings.HasSuffix(pkg, "/internal/e2etest") {
			t.Errorf("the binary depends on %s, a test package", pkg)
		}
	}
}
