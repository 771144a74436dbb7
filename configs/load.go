package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	envprovider "github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// Defaults of the global section.
const (
	DefaultSchedule            = "@every 1m"
	DefaultTimeout             = 10 * time.Second
	DefaultMaxConcurrentChecks = 32
	// DefaultLoginBudget is a quarter of Salesforce's 3,600 logins per user per hour.
	DefaultLoginBudget    = 900
	DefaultBackoffInitial = time.Minute
	DefaultBackoffMax     = time.Hour
	DefaultProbeMaxAge    = 30 * time.Second
	DefaultProbeMaxConc   = 4
	DefaultProbeTimeout   = 10 * time.Second
	// MaxTimeout caps timeouts: a request hanging longer than this is broken,
	// and a longer wait would delay the next scheduled check.
	MaxTimeout = 5 * time.Minute
)

// Environment variables that override global settings. Other TOKENWATCH_*
// variables belong to the command line and are ignored here.
const (
	envGlobalPrefix              = "TOKENWATCH_GLOBAL_"
	envGlobalSchedule            = envGlobalPrefix + "SCHEDULE"
	envGlobalTimeout             = envGlobalPrefix + "TIMEOUT"
	envGlobalMaxConcurrentChecks = envGlobalPrefix + "MAX_CONCURRENT_CHECKS"
)

// Load reads the YAML file at path, applies TOKENWATCH_GLOBAL_* overrides and
// ${NAME} references from env (in os.Environ form), fills in defaults and
// validates. Relative *_file paths resolve against the file's directory.
// When the configuration is invalid the error is Problems, naming every
// problem found; other errors mean the file could not be read or parsed.
func Load(path string, env []string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	b, err := readBounded(abs, MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return parse(bytesProvider(b), filepath.Dir(abs), abs, env)
}

// MaxConfigBytes bounds the configuration file: 10,000 orgs take about 4 MB.
const MaxConfigBytes = 16 << 20

// Parse is Load for YAML already in memory; relative *_file paths resolve
// against baseDir.
func Parse(yamlBytes []byte, baseDir string, env []string) (*Config, error) {
	return parse(bytesProvider(yamlBytes), baseDir, "", env)
}

// bytesProvider lets koanf read YAML held in memory.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }

func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytes provider needs a parser")
}

// parse reads the configuration; configFile is its absolute path, when it
// came from a file.
func parse(p koanf.Provider, baseDir, configFile string, env []string) (*Config, error) {
	// koanf's file provider and YAML parser, without loading the result into
	// a koanf instance: the reader walks the parsed map once, and koanf's
	// merge and its deep copy (Raw) would double the work of a file with
	// thousands of orgs.
	b, err := p.ReadBytes()
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	raw, err := yaml.Parser().Unmarshal(b)
	if err == nil {
		err = oneDocument(b)
	}
	if err != nil {
		var typeErr *yamlv3.TypeError
		if errors.As(err, &typeErr) {
			return nil, fmt.Errorf("load config: %s", describeTypeError(typeErr))
		}
		return nil, fmt.Errorf("load config: %w", err)
	}

	r := &reader{baseDir: baseDir, configFile: configFile, env: lookupTable(env)}
	root := newSection(&r.probs, "", raw)
	cfg := &Config{}
	cfg.Global = r.global(root.sub("global"), env)
	var orgFiles bool
	cfg.OrgFiles.Patterns, orgFiles = r.orgFilePatterns(root)
	defined := map[string]int{}
	cfg.Orgs = r.orgs(root, cfg.Global, defined, orgFiles)
	if len(cfg.OrgFiles.Patterns) > 0 {
		sources := make(map[string]orgSource, len(defined))
		for name, i := range defined {
			sources[name] = orgSource{path: fmt.Sprintf("orgs[%d]", i)}
		}
		var more []Org
		more, cfg.OrgFiles.Files = r.readOrgFiles(cfg.OrgFiles.Patterns, cfg.Global, sources)
		cfg.Orgs = append(cfg.Orgs, more...)
	}
	cfg.Alerting = r.alerting(root.sub("alerting"))
	root.done()

	if len(r.probs.list) > 0 {
		sortProblems(r.probs.list)
		return nil, r.probs.list
	}
	return cfg, nil
}

// oneDocument refuses a file with a second YAML document, which the parser
// would ignore silently: settings after a stray "---" would never apply.
// The decoder runs only when a line starts a document after the first.
func oneDocument(b []byte) error {
	seenContent := false
	maybe := false
	for line := range bytes.Lines(b) {
		t := bytes.TrimRight(line, "\r\n")
		if bytes.HasPrefix(t, []byte("---")) && (len(t) == 3 || t[3] == ' ' || t[3] == '\t') {
			if seenContent {
				maybe = true
				break
			}
			continue
		}
		if s := bytes.TrimSpace(t); len(s) > 0 && s[0] != '#' {
			seenContent = true
		}
	}
	if !maybe {
		return nil
	}
	dec := yamlv3.NewDecoder(bytes.NewReader(b))
	var first, second yamlv3.Node
	if err := dec.Decode(&first); err != nil {
		return err
	}
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("the file holds more than one YAML document (a second \"---\", line %d): keep one, everything after it would be ignored", second.Line)
}

// describeTypeError keeps yaml's line numbers but drops its quotes of the
// offending value: that value is the whole file when a secret file is passed
// as the config by mistake. Everything nested decodes into interfaces, so a
// type mismatch can only be at the top level.
func describeTypeError(e *yamlv3.TypeError) string {
	msgs := make([]string, len(e.Errors))
	for i, m := range e.Errors {
		if line, _, found := strings.Cut(m, ": cannot unmarshal"); found {
			m = line + ": the top level must be a YAML mapping with global: and orgs:"
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}

// reader turns the raw configuration into a Config, collecting problems.
type reader struct {
	probs   problems
	baseDir string
	// configFile is the configuration file's absolute path, "" for Parse:
	// org_files never read it as an org file (orgs.d/../*.yml).
	configFile string
	env        map[string]string
}

// lookupTable indexes env; a later entry wins, as it does for os/exec, so
// appending to os.Environ() overrides.
func lookupTable(env []string) map[string]string {
	out := make(map[string]string, len(env))
	for _, kv := range env {
		if name, value, ok := strings.Cut(kv, "="); ok {
			out[name] = value
		}
	}
	return out
}

// resolve makes a *_file path absolute against the config file's directory,
// so the loaded Config means the same thing whatever the working directory.
func (r *reader) resolve(path string) string {
	if path == "" || filepath.IsAbs(path) || r.baseDir == "" {
		return path
	}
	return filepath.Join(r.baseDir, path)
}

func (r *reader) global(s *section, env []string) Global {
	g := Global{Schedule: DefaultSchedule, Timeout: DefaultTimeout, MaxConcurrentChecks: DefaultMaxConcurrentChecks}
	paths := map[string]string{
		"schedule":              s.key("schedule"),
		"timeout":               s.key("timeout"),
		"max_concurrent_checks": s.key("max_concurrent_checks"),
	}
	if v := s.str("schedule"); v != "" {
		g.Schedule = v
	}
	if d, ok := s.duration("timeout"); ok {
		g.Timeout = d
	}
	if n, ok := s.integer("max_concurrent_checks"); ok {
		g.MaxConcurrentChecks = n
	}
	g.LoginBudget = DefaultLoginBudget
	if n, ok := s.integer("login_budget"); ok {
		switch {
		case n < 0:
			r.probs.add(s.key("login_budget"), "must be at least 1 (logins per hour), got %d", n)
		case n > 0:
			g.LoginBudget = n
		}
	}
	g.Backoff = r.backoff(s.sub("backoff"))
	g.Probe = r.probe(s.sub("probe"))
	g.Metrics = r.metrics(s.sub("metrics"), Metrics{})
	s.done()

	r.overrideGlobal(&g, paths, env)

	// A problem is already recorded when the value did not parse.
	if !r.probs.has(paths["schedule"]) {
		r.checkSchedule(paths["schedule"], g.Schedule)
	}
	if !r.probs.has(paths["timeout"]) {
		checkTimeout(&r.probs, paths["timeout"], g.Timeout)
	}
	if !r.probs.has(paths["max_concurrent_checks"]) && g.MaxConcurrentChecks < 1 {
		r.probs.add(paths["max_concurrent_checks"], "must be at least 1, got %d", g.MaxConcurrentChecks)
	}
	return g
}

func (r *reader) backoff(s *section) Backoff {
	b := Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax}
	if d, ok := s.duration("initial"); ok {
		b.Initial = d
		if d <= 0 {
			r.probs.add(s.key("initial"), "must be positive, got %s", d)
		}
	}
	if d, ok := s.duration("max"); ok {
		b.Max = d
		if d <= 0 {
			r.probs.add(s.key("max"), "must be positive, got %s", d)
		}
	}
	if b.Initial > 0 && b.Max > 0 && b.Max < b.Initial {
		r.probs.add(s.key("max"), "must not be shorter than backoff.initial (%s), got %s", b.Initial, b.Max)
	}
	s.done()
	return b
}

func (r *reader) probe(s *section) Probe {
	p := Probe{MaxAge: DefaultProbeMaxAge, MaxConcurrent: DefaultProbeMaxConc, Timeout: DefaultProbeTimeout}
	if d, ok := s.duration("max_age"); ok {
		p.MaxAge = d
		if d < 0 {
			r.probs.add(s.key("max_age"), "must not be negative, got %s", d)
		}
	}
	if n, ok := s.integer("max_concurrent"); ok {
		p.MaxConcurrent = n
		if n < 1 {
			r.probs.add(s.key("max_concurrent"), "must be at least 1, got %d", n)
		}
	}
	if d, ok := s.duration("timeout"); ok {
		p.Timeout = d
		checkTimeout(&r.probs, s.key("timeout"), d)
	}
	s.done()
	return p
}

// overrideGlobal applies TOKENWATCH_GLOBAL_* variables over the file. A value
// set this way is reported under the variable's name, which is where the
// user has to fix it.
func (r *reader) overrideGlobal(g *Global, paths map[string]string, env []string) {
	k := koanf.New(".")
	// The env provider with an empty delimiter keeps variable names whole.
	err := k.Load(envprovider.Provider("", envprovider.Opt{
		Prefix:      envGlobalPrefix,
		EnvironFunc: func() []string { return env },
	}), nil)
	if err != nil {
		r.probs.add("", "read environment: %v", err)
		return
	}
	for _, name := range k.Keys() {
		value := k.String(name)
		if value == "" {
			// An empty variable is how shells and orchestrators unset things.
			continue
		}
		switch name {
		case envGlobalSchedule:
			g.Schedule = value
			paths["schedule"] = name
		case envGlobalTimeout:
			paths["timeout"] = name
			d, err := time.ParseDuration(value)
			if err != nil {
				r.probs.add(name, "invalid duration (use Go syntax, e.g. 10s or 1h30m)")
				continue
			}
			g.Timeout = d
		case envGlobalMaxConcurrentChecks:
			paths["max_concurrent_checks"] = name
			n, err := strconv.Atoi(value)
			if err != nil {
				r.probs.add(name, "must be a whole number")
				continue
			}
			g.MaxConcurrentChecks = n
		default:
			r.probs.add(name, "unknown setting (known: %s, %s, %s)",
				envGlobalSchedule, envGlobalTimeout, envGlobalMaxConcurrentChecks)
		}
	}
}

// orgs reads the orgs: list; firstIndex gets the index of every name.
// With org_files set, the list may be absent: the orgs are in the files.
func (r *reader) orgs(root *section, g Global, firstIndex map[string]int, orgFiles bool) []Org {
	items, ok := root.list("orgs")
	if !ok {
		if !r.probs.has("orgs") && !orgFiles {
			r.probs.add("orgs", "at least one org is required (add a list entry under orgs:)")
		}
		return nil
	}
	if len(items) == 0 && !orgFiles {
		r.probs.add("orgs", "at least one org is required (add a list entry under orgs:)")
		return nil
	}
	out := make([]Org, 0, len(items))
	for i, item := range items {
		s := newSection(&r.probs, fmt.Sprintf("orgs[%d]", i), item)
		if !s.present {
			if item == nil {
				r.probs.add(s.path, "empty org (remove the dash or fill it in)")
			}
			continue
		}
		out = append(out, r.org(s, i, g, firstIndex))
	}
	return out
}

// sortProblems orders problems by path, comparing numbers inside paths by
// value so orgs[2] comes before orgs[10]; problems at one path keep their order.
func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool { return naturalLess(ps[i].Path, ps[j].Path) })
}

func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da != "" && db != "" {
			if len(da) != len(db) {
				return len(da) < len(db)
			}
			if da != db {
				return da < db
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
