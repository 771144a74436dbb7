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

// TestLayoutRulesOfDirection enforces the rules of direction (README, Layout):
// checks knows nothing of Prometheus, cron or alerts; configs reads files
// only; exporters never import the agent; nothing imports cmd.
func TestLayoutRulesOfDirection(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string
		allowOnly []string // when set, every non-standard dependency must start with one of these
	}{
		{pkg: "./checks", allowOnly: []string{module + "/checks", "github.com/go-jose/go-jose/v4", "golang.org/x/oauth2"}},
		{pkg: "./configs", allowOnly: []string{module + "/configs", "github.com/knadh/", "github.com/go-viper/mapstructure", "github.com/mitchellh/", "go.yaml.in/yaml", "github.com/robfig/cron", "github.com/fsnotify/", "golang.org/x/sys"}},
		{pkg: "./internal/orgsim", allowOnly: []string{module + "/internal/orgsim"}},
		{pkg: "./exporters/...", forbidden: []string{module + "/agent", module + "/configs", module + "/cmd", "github.com/robfig/cron"}},
		{pkg: "./agent", forbidden: []string{module + "/cmd"}},
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			for _, d := range deps(t, r.pkg) {
				for _, f := range r.forbidden {
					if strings.HasPrefix(d, f) {
						t.Errorf("%s depends on %s", r.pkg, d)
					}
				}
				if r.allowOnly == nil {
					continue
				}
				ok := false
				for _, a := range r.allowOnly {
					ok = ok || strings.HasPrefix(d, a)
				}
				if !ok {
					t.Errorf("%s depends on %s, outside what its layer may import", r.pkg, d)
				}
			}
		})
	}
}
