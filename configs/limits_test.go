package configs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A secret file that is not a small regular file is a problem with the
// field path, at once: /dev/zero used to exhaust memory, a named pipe to
// wedge the reload (and, behind it, SIGTERM).
func TestSecretFilesHaveLimits(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxSecretFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, want string
	}{
		{"/dev/zero", "orgs[0].client.secret_file: cannot read /dev/zero: not a regular file (a device); name a file"},
		{pipe, "orgs[0].client.secret_file: cannot read " + pipe + ": not a regular file (a named pipe); name a file"},
		{dir, "orgs[0].client.secret_file: cannot read " + dir + ": not a regular file (a directory); name a file"},
		{big, "orgs[0].client.secret_file: cannot read " + big + ": 65537 bytes, more than the 65536 allowed"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			yaml := "orgs:\n  - name: acme\n    url: https://acme.my.salesforce.com\n" +
				"    client: {id: c, secret_file: " + tc.file + "}\n    grant: {type: client_credentials}\n"
			_, err := Parse([]byte(yaml), dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestConfigFileHasALimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yml")
	if err := os.WriteFile(path, make([]byte, MaxConfigBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), "more than the 16777216 allowed") {
		t.Fatalf("error %v, want the size limit", err)
	}
	if _, err := Load("/dev/zero", nil); err == nil || !strings.Contains(err.Error(), "not a regular file (a device)") {
		t.Fatalf("config /dev/zero: %v", err)
	}
}

// A second YAML document would be ignored; it is an error instead. A
// leading "---" and "---" inside a block are fine.
func TestOneYAMLDocument(t *testing.T) {
	one := "orgs:\n  - name: acme\n    url: https://acme.my.salesforce.com\n    client: {id: c, secret: s}\n    grant: {type: client_credentials}\n"
	if _, err := Parse([]byte("---\n# leading marker\n"+one), "", nil); err != nil {
		t.Fatalf("a leading document marker: %v", err)
	}
	_, err := Parse([]byte(one+"---\nglobal: {schedule: \"@every 5s\"}\n"), "", nil)
	if err == nil || !strings.Contains(err.Error(), "more than one YAML document") || !strings.Contains(err.Error(), "line 6") {
		t.Fatalf("a second document: %v, want it refused with its line", err)
	}
}
