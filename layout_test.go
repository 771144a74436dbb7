package tokenwatch

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tokenwatch/tokenwatch"

// deps lists the non-standard packages a package depends on, transitively.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// layers is the table of allowed imports (README, Layout). mine lists the
// project's own packages a package may depend on, transitively: a new edge
// between them is a decision, made here. only, when set, bounds every other
// non-standard dependency too; forbid names what a layer's own code must not
// import (directly: prometheus/common's HTTP client settings bring
// client_golang in through a dialer's metrics, which the agent never uses).
//
// The rules of direction: checks knows nothing of Prometheus, cron or
// alerts; configs produces the checks' own types from files; the agent knows
// nothing of the exporters, which consume its results through the types of
// checks and internal/alerting and never import it; nothing imports cmd.
var layers = []struct {
	pkg          string
	mine         []string
	only, forbid []string
}{
	{pkg: "./checks", mine: []string{"checks"}, only: []string{"github.com/go-jose/go-jose/v4", "golang.org/x/oauth2"}},
	{pkg: "./configs", mine: []string{"configs", "checks", "internal/alerting"}, forbid: []string{"github.com/prometheus/client_golang"}},
	{pkg: "./internal/alerting", mine: []string{"internal/alerting"}, forbid: []string{"github.com/prometheus/client_golang"}},
	{pkg: "./internal/orgsim", mine: []string{"internal/orgsim"}, only: []string{}},
	{pkg: "./internal/store", mine: []string{"internal/store"}, only: []string{"go.etcd.io/bbolt", "golang.org/x/sys"}},
	{pkg: "./internal/fakeclock", mine: []string{"internal/fakeclock"}, only: []string{}},
	{pkg: "./exporters/...", mine: []string{"exporters/", "checks", "internal/alerting"}, forbid: []string{"github.com/robfig/cron"}},
	{pkg: "./agent", mine: []string{"agent", "checks", "configs", "internal/store", "internal/alerting"},
		forbid: []string{"github.com/prometheus/client_golang"}},
}

func TestLayoutRulesOfDirection(t *testing.T) {
	for _, l := range layers {
		t.Run(l.pkg, func(t *testing.T) {
			for _, d := range deps(t, l.pkg) {
				if rest, own := strings.CutPrefix(d, module+"/"); own {
					if !hasPrefix(rest, l.mine) {
						t.Errorf("%s depends on %s, outside the project's packages its layer may import", l.pkg, d)
					}
					continue
				}
				if l.only != nil && !hasPrefix(d, l.only) {
					t.Errorf("%s depends on %s, outside what its layer may import", l.pkg, d)
				}
			}
			for _, d := range imports(t, l.pkg) {
				if hasPrefix(d, l.forbid) {
					t.Errorf("%s imports %s, which its layer must not", l.pkg, d)
				}
			}
		})
	}
}

// imports lists the packages the package (or pattern) imports directly.
func imports(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \"\\n\"}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Nothing imports cmd, and nothing but cmd imports the agent.
func TestNothingImportsCmdOrTheAgent(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		for _, imp := range imports {
			if strings.HasPrefix(imp, module+"/cmd") {
				t.Errorf("%s imports %s", pkg, imp)
			}
			if imp == module+"/agent" && !strings.HasPrefix(pkg, module+"/cmd") && !strings.HasPrefix(pkg, module+"/agent") {
				t.Errorf("%s imports the agent; only cmd wires it", pkg)
			}
		}
	}
}
