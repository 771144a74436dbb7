package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/common/promslog"
)

// help parses args (a help request) with the real command line and returns
// what it printed on stdout and stderr, and the exit status it asked for.
func help(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errOut bytes.Buffer
	app, _ := newApp(&cli{log: &promslog.Config{Writer: &errOut}}, &out, &errOut)
	status = -1
	app.Terminate(func(code int) {
		if status < 0 {
			status = code
		}
	})
	_, _ = app.Parse(args)
	return out.String(), errOut.String(), status
}

// tokenwatch --help names every command with its description, on stdout
// (so that it pipes into less), under a one-line description of the program.
func TestHelpNamesEveryCommand(t *testing.T) {
	stdout, stderr, status := help(t, "--help")
	if status != 0 || stderr != "" {
		t.Errorf("--help: exit %d, stderr %q; want 0 and the help on stdout", status, stderr)
	}
	lines := strings.Split(stdout, "\n")
	if len(lines) < 3 || lines[2] != appHelp || len(appHelp) > 80 {
		t.Errorf("the program's description is not one line of at most 80 characters under the usage:\n%s", stdout)
	}
	app, _ := newApp(&cli{log: &promslog.Config{}}, &bytes.Buffer{}, &bytes.Buffer{})
	var names []string
	for _, cmd := range app.Model().Commands {
		if cmd.Hidden {
			continue
		}
		names = append(names, cmd.Name)
		if !strings.Contains(stdout, "\n"+cmd.Name) {
			t.Errorf("--help does not list the command %s", cmd.Name)
		}
		if cmd.Name != "help" && !strings.HasSuffix(cmd.Help, ".") {
			t.Errorf("command %s: its description %q is not a sentence", cmd.Name, cmd.Help)
		}
	}
	for _, want := range []string{"run", "check-config", "diagnose", "demo", "version"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("no command %s among %v", want, names)
		}
	}
}

// Every command's help renders, and says of each of its flags what it is
// for and, where it has one, its default.
func TestEveryCommandsHelpDescribesItsFlags(t *testing.T) {
	app, _ := newApp(&cli{log: &promslog.Config{}}, &bytes.Buffer{}, &bytes.Buffer{})
	for _, cmd := range app.Model().Commands {
		if cmd.Hidden || cmd.Name == "help" {
			continue
		}
		t.Run(cmd.Name, func(t *testing.T) {
			stdout, stderr, status := help(t, cmd.Name, "--help")
			if status != 0 || stderr != "" || !strings.HasPrefix(stdout, "usage: tokenwatch "+cmd.Name) {
				t.Fatalf("%s --help: exit %d, stderr %q, stdout:\n%s", cmd.Name, status, stderr, stdout)
			}
			for _, f := range append(app.Model().Flags, cmd.Flags...) {
				if f.Hidden {
					continue
				}
				if !strings.Contains(stdout, "--"+f.Name) && !strings.Contains(stdout, "--[no-]"+f.Name) {
					t.Errorf("--%s is not in the help", f.Name)
				}
				if strings.TrimSpace(f.Help) == "" {
					t.Errorf("--%s has no help", f.Name)
				}
				if def := f.Default; len(def) > 0 && def[0] != "" && !f.IsBoolFlag() &&
					!strings.Contains(stdout, "--"+f.Name+"="+def[0]) && !strings.Contains(stdout, "--"+f.Name+`="`+def[0]+`"`) {
					t.Errorf("--%s: the help does not show its default %q", f.Name, def[0])
				}
			}
		})
	}
}
