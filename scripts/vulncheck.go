//go:build ignore

// Command vulncheck reads `govulncheck -format json` on stdin and decides, for
// scripts/test.sh, whether the vulnerabilities our code reaches fail the run:
//
//   - in a module we depend on: always;
//   - in the standard library (or the toolchain): unless the Go that releases
//     are built with (-build-go, the builder image of deploy/Dockerfile) fixes
//     it. The Go on a developer's machine may be older than that; what it
//     still has is listed, and the run goes on.
//
// It prints what it found and exits 1 on a failing finding, 2 on bad input.
//
//	govulncheck -format json -db file://DIR ./... | go run scripts/vulncheck.go -build-go 1.26.10
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

type message struct {
	Config *struct {
		GoVersion      string `json:"go_version"`
		DB             string `json:"db"`
		DBLastModified string `json:"db_last_modified"`
		ScanLevel      string `json:"scan_level"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string   `json:"osv"`
		FixedVersion string   `json:"fixed_version"`
		Trace        []*frame `json:"trace"`
	} `json:"finding"`
}

// vuln is one vulnerability our code calls, with one of its call paths.
type vuln struct {
	id, summary, module, version, fixed string
	path                                []*frame // trace[0] is the vulnerable symbol, the last is our code
}

func main() {
	buildGo := flag.String("build-go", "", "the Go release builds use (e.g. 1.26.10): standard-library vulnerabilities it fixes do not fail")
	flag.Parse()
	build, ok := parseGo(*buildGo)
	if !ok {
		fmt.Fprintf(os.Stderr, "vulncheck: -build-go %q is not a Go version such as 1.26.10\n", *buildGo)
		os.Exit(2)
	}

	var (
		goVersion, db string
		summaries     = map[string]string{}
		called        = map[string]*vuln{}
	)
	dec := json.NewDecoder(os.Stdin)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			fmt.Fprintf(os.Stderr, "vulncheck: reading govulncheck's output: %v\n", err)
			os.Exit(2)
		}
		switch {
		case m.Config != nil:
			goVersion, db = m.Config.GoVersion, m.Config.DB+" of "+m.Config.DBLastModified
			if m.Config.ScanLevel != "symbol" {
				fmt.Fprintf(os.Stderr, "vulncheck: govulncheck scanned at %q level; want symbol\n", m.Config.ScanLevel)
				os.Exit(2)
			}
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0 && m.Finding.Trace[0].Function != "":
			// Only symbol-level findings: our code calls the vulnerable function.
			if called[m.Finding.OSV] == nil {
				t := m.Finding.Trace
				called[m.Finding.OSV] = &vuln{id: m.Finding.OSV, module: t[0].Module, version: t[0].Version, fixed: m.Finding.FixedVersion, path: t}
			}
		}
	}
	if goVersion == "" {
		fmt.Fprintln(os.Stderr, "vulncheck: govulncheck printed no configuration: did it run?")
		os.Exit(2)
	}

	var failing, fixedByBuild []*vuln
	for _, v := range called {
		v.summary = summaries[v.id]
		if v.module == "stdlib" || v.module == "toolchain" {
			if f, ok := parseGo(v.fixed); ok && !build.less(f) {
				fixedByBuild = append(fixedByBuild, v)
				continue
			}
		}
		failing = append(failing, v)
	}
	byID := func(vs []*vuln) {
		sort.Slice(vs, func(i, j int) bool { return vs[i].id < vs[j].id })
	}
	byID(failing)
	byID(fixedByBuild)

	fmt.Printf("govulncheck with %s (database %s): our code calls %s\n", goVersion, db, vulns(len(called)))
	if len(fixedByBuild) > 0 {
		fmt.Printf("%s in the standard library of %s, fixed in go%s, which builds use (deploy/Dockerfile):\n",
			vulns(len(fixedByBuild)), goVersion, build)
		for _, v := range fixedByBuild {
			fmt.Printf("  %s  %s@%s, fixed in %s: %s\n", v.id, v.path[0].Package, v.version, v.fixed, v.summary)
		}
	}
	if len(failing) == 0 {
		return
	}
	fmt.Printf("FAIL: %s that our code calls and builds still have:\n", vulns(len(failing)))
	for _, v := range failing {
		fixed := "no fixed version"
		if v.fixed != "" {
			fixed = "fixed in " + v.fixed
		}
		fmt.Printf("  %s  %s@%s (%s): %s\n", v.id, v.module, v.version, fixed, v.summary)
		for i := len(v.path) - 1; i >= 0; i-- {
			fmt.Printf("      %s\n", v.path[i])
		}
		fmt.Printf("      https://pkg.go.dev/vuln/%s\n", v.id)
	}
	os.Exit(1)
}

func vulns(n int) string {
	if n == 1 {
		return "1 known vulnerability"
	}
	return fmt.Sprintf("%d known vulnerabilities", n)
}

func (f *frame) String() string {
	name := f.Package + "." + f.Function
	if f.Receiver != "" {
		name = f.Package + "." + strings.TrimPrefix(f.Receiver, "*") + "." + f.Function
	}
	if f.Position != nil && f.Position.Filename != "" {
		return fmt.Sprintf("%s (%s:%d)", name, f.Position.Filename, f.Position.Line)
	}
	return name
}

// goRelease is a Go release: 1.26.10 is {1, 26, 10}.
type goRelease [3]int

// parseGo reads 1.26.10, go1.26.10 or v1.26.10 (govulncheck's form); a
// prerelease (1.27.0-rc.1, go1.27rc1) does not parse.
func parseGo(s string) (goRelease, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "go"), "v")
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return goRelease{}, false
	}
	var r goRelease
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return goRelease{}, false
		}
		r[i] = n
	}
	return r, true
}

func (r goRelease) less(o goRelease) bool {
	for i := range r {
		if r[i] != o[i] {
			return r[i] < o[i]
		}
	}
	return false
}

func (r goRelease) String() string { return fmt.Sprintf("%d.%d.%d", r[0], r[1], r[2]) }
