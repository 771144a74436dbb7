// Package status shows people the state of every org: a server-rendered
// status page at / and the same state as JSON at /api/v1/orgs.
package status

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// The states of an org, as the API names them.
const (
	StateOK      = "ok"
	StateFailing = "failing"
	StatePending = "pending"
)

// OrgState is one org in the JSON API.
type OrgState struct {
	Name     string            `json:"name"`
	Provider string            `json:"provider"`
	Grant    string            `json:"grant"`
	Labels   map[string]string `json:"labels"`
	// State is StateOK, StateFailing, or StatePending until the first check finished.
	State string `json:"state"`
	// Last is the most recent check; null until the first one finished.
	Last *checks.Result `json:"last"`
	// FiringAlerts names the org's alerts firing now, sorted.
	FiringAlerts []string `json:"firing_alerts,omitempty"`
}

// OrgList is the document served at /api/v1/orgs.
type OrgList struct {
	Orgs []OrgState `json:"orgs"`
}

// Source lists the configured orgs with their last results. The agent owns
// them (cmd adapts it); the Page only reads them, on every request, so an
// org removed by a reload disappears from the page at once, and a result
// that reaches the agent after its org was removed never shows.
type Source interface {
	Orgs() []checks.OrgState
}

// SourceFunc adapts a function to Source.
type SourceFunc func() []checks.OrgState

// Orgs implements Source.
func (f SourceFunc) Orgs() []checks.OrgState { return f() }

// PageOptions configure a Page.
type PageOptions struct {
	// Source lists the orgs to show; none when nil.
	Source Source
	// Title heads the page; "tokenwatch" when empty.
	Title string
	// Version is shown next to the title, e.g. the build version.
	Version string
	// Clock tells the time for countdowns and "ago"; time.Now when nil.
	Clock func() time.Time
	// Firing, when set, names the alerts firing now by org (the agent's alert state).
	Firing func() map[string][]string
}

//go:embed page.html
var templates embed.FS

// Page serves the state of every configured org, read from its Source at
// each request, as HTML and JSON. It keeps nothing of its own; the handlers
// are safe for concurrent use.
type Page struct {
	src     Source
	title   string
	version string
	clock   func() time.Time
	firing  func() map[string][]string
	tmpl    *template.Template
}

// NewPage returns a Page of the orgs opts.Source lists.
func NewPage(opts PageOptions) *Page {
	p := &Page{
		src:     opts.Source,
		title:   opts.Title,
		version: opts.Version,
		clock:   opts.Clock,
		firing:  opts.Firing,
		// The template is part of the binary; a parse error is a build
		// defect that every test run catches.
		tmpl: template.Must(template.ParseFS(templates, "page.html")),
	}
	if p.title == "" {
		p.title = "tokenwatch"
	}
	if p.clock == nil {
		p.clock = time.Now
	}
	return p
}

// snapshot reads the orgs from the Source, sorted by name, with their
// state and firing alerts.
func (p *Page) snapshot() []OrgState {
	var orgs []checks.OrgState
	if p.src != nil {
		orgs = p.src.Orgs()
	}
	var firing map[string][]string
	if p.firing != nil {
		firing = p.firing()
	}
	out := make([]OrgState, 0, len(orgs))
	for _, org := range orgs {
		o := OrgState{
			Name:     org.Info.Name,
			Provider: org.Info.Provider,
			Grant:    org.Info.Grant,
			// Never null in the JSON, and not the Source's map.
			Labels: make(map[string]string, len(org.Info.Labels)),
			State:  stateOf(org.Last),
			Last:   org.Last,
		}
		maps.Copy(o.Labels, org.Info.Labels)
		if f := firing[o.Name]; len(f) > 0 {
			o.FiringAlerts = slices.Sorted(slices.Values(f))
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func stateOf(r *checks.Result) string {
	switch {
	case r == nil:
		return StatePending
	case r.Success():
		return StateOK
	default:
		return StateFailing
	}
}

// API serves the orgs as JSON, sorted by name.
func (p *Page) API() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) {
			return
		}
		body, err := json.Marshal(OrgList{Orgs: p.snapshot()})
		if err != nil {
			http.Error(w, "encoding the org list failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(append(body, '\n'))
	})
}

// HTML serves the status page at exactly "/"; every other path is 404, so
// that mounting it at "/" on a mux does not answer for mistyped URLs.
func (p *Page) HTML() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if !allowRead(w, r) {
			return
		}
		// Render fully before writing so a failure is a clean 500, not half a page.
		var buf bytes.Buffer
		if err := p.tmpl.Execute(&buf, p.view()); err != nil {
			http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		// The page needs no script and no outside resource; say so, so that
		// server-sent text in an explanation can never run even if escaping failed.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		h.Set("X-Content-Type-Options", "nosniff")
		w.Write(buf.Bytes())
	})
}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "only GET and HEAD are allowed here", http.StatusMethodNotAllowed)
	return false
}

// pageView is what the template renders.
type pageView struct {
	Title, Version string
	Generated      string
	Failing, OK    int
	Pending        int
	// Summary is the line read first, e.g. "1 failing, 6 ok"; SummaryState
	// colours it: failing, pending, ok, or empty without orgs.
	Summary, SummaryState string
	Rows                  []rowView
}

type rowView struct {
	Name, Provider, Grant string
	Labels                string
	// State is the CSS class, StateWord what the reader sees.
	State, StateWord string
	Outcome          string
	OutcomeDoc       string
	Expiry           string
	ExpiryAt         string
	LastCheck        string
	LastCheckAt      string
	Steps            []string
	Explanation, Fix string
	FiringAlerts     []string
}

// stateRank orders rows worst first: failing orgs, then those not checked
// yet, then healthy ones. An org still pending is not known to be healthy,
// and one that stays pending (its checks never finish) needs a look.
func stateRank(state string) int {
	switch state {
	case StateFailing:
		return 0
	case StatePending:
		return 1
	default:
		return 2
	}
}

// summarize is the page's first line: the counts worst first, zeros left out.
func summarize(failing, pending, ok int) (text, state string) {
	switch {
	case failing+pending+ok == 0:
		return "No orgs are configured", "empty"
	case failing == 0 && pending == 0:
		if ok == 1 {
			return "The org is ok", StateOK
		}
		return fmt.Sprintf("All %d orgs ok", ok), StateOK
	}
	var parts []string
	for _, c := range []struct {
		n    int
		word string
	}{{failing, "failing"}, {pending, "not checked yet"}, {ok, "ok"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.word))
		}
	}
	state = StatePending
	if failing > 0 {
		state = StateFailing
	}
	return strings.Join(parts, ", "), state
}

func (p *Page) view() pageView {
	now := p.clock()
	orgs := p.snapshot()
	sort.SliceStable(orgs, func(i, j int) bool { return stateRank(orgs[i].State) < stateRank(orgs[j].State) })
	v := pageView{
		Title:     p.title,
		Version:   p.version,
		Generated: now.UTC().Format(time.RFC3339),
		Rows:      make([]rowView, 0, len(orgs)),
	}
	for _, o := range orgs {
		switch o.State {
		case StateFailing:
			v.Failing++
		case StateOK:
			v.OK++
		default:
			v.Pending++
		}
		v.Rows = append(v.Rows, rowOf(o, now))
	}
	v.Summary, v.SummaryState = summarize(v.Failing, v.Pending, v.OK)
	return v
}

func rowOf(o OrgState, now time.Time) rowView {
	row := rowView{
		Name:         o.Name,
		Provider:     o.Provider,
		Grant:        o.Grant,
		Labels:       labelText(o.Labels),
		State:        o.State,
		StateWord:    strings.ToUpper(o.State),
		Expiry:       "unknown",
		LastCheck:    "never",
		FiringAlerts: o.FiringAlerts,
	}
	r := o.Last
	if r == nil {
		return row
	}
	row.Outcome = string(r.Outcome)
	row.OutcomeDoc = checks.OutcomeDoc[r.Outcome]
	if exp := r.Token.Expiry; !exp.IsZero() {
		row.ExpiryAt = exp.UTC().Format(time.RFC3339)
		if d := exp.Sub(now); d > 0 {
			row.Expiry = "in " + shortDuration(d)
		} else {
			row.Expiry = "expired " + shortDuration(-d) + " ago"
		}
	}
	finished := r.Start.Add(r.Duration)
	row.LastCheckAt = finished.UTC().Format(time.RFC3339)
	if ago := now.Sub(finished); ago >= time.Second {
		row.LastCheck = shortDuration(ago) + " ago"
	} else {
		row.LastCheck = "just now"
	}
	if r.Loaded {
		row.LastCheck += " (before the restart)"
	}
	if !r.NextAttempt.IsZero() {
		row.LastCheck += "; backing off, next login " + r.NextAttempt.UTC().Format(time.RFC3339)
	}
	for _, s := range r.Steps {
		if s.Skipped {
			row.Steps = append(row.Steps, string(s.Step)+" skipped")
			continue
		}
		row.Steps = append(row.Steps, string(s.Step)+" "+milliseconds(s.Duration))
	}
	if o.State == StateFailing {
		row.Explanation = r.Explanation
		row.Fix = r.Fix
	}
	return row
}

func labelText(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, " ")
}

// shortDuration is d in its two largest units, truncated: "1h59m", "4m5s",
// "12s", "3d4h". Truncating keeps a countdown from promising time that is not left.
func shortDuration(d time.Duration) string {
	d = d.Truncate(time.Second)
	days := d / (24 * time.Hour)
	hours := (d % (24 * time.Hour)) / time.Hour
	minutes := (d % time.Hour) / time.Minute
	seconds := (d % time.Minute) / time.Second
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh%dm", hours, minutes)
	case minutes > 0:
		return fmt.Sprintf("%dm%ds", minutes, seconds)
	default:
		return fmt.Sprintf("%ds", seconds)
	}
}

// milliseconds shows a step latency; fast ones keep decimals so a loopback
// answer in microseconds does not read as 0 ms, as if nothing happened.
func milliseconds(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}
