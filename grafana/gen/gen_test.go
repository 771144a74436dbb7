package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"go.yaml.in/yaml/v3"
)

const committed = "../dashboards/tokenwatch.json"

func readCommitted(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("the dashboard is missing (go generate ./grafana/gen writes it): %v", err)
	}
	return b
}

// sdkErr turns the SDK's error values into nil when they hold no error:
// UnmarshalJSONStrict and Validate return an empty error list, not nil.
func sdkErr(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

func TestCommittedDashboardIsTheGeneratorOutput(t *testing.T) {
	want, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	if got := readCommitted(t); !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the generator builds; run: go generate ./grafana/gen", committed)
	}
}

func TestDashboardDecodesStrictlyAndValidates(t *testing.T) {
	// Without the panel and query plugins the SDK decodes panel options and
	// queries loosely; with them every field of every panel is checked.
	plugins.RegisterDefaultPlugins()
	// The SDK's classic model is deprecated in favour of the v2 schema, but
	// the classic JSON is what the generator writes and Grafana imports:
	// checking the file against it is the point.
	var d dashboard.Dashboard //nolint:staticcheck // see above
	if err := sdkErr(d.UnmarshalJSONStrict(readCommitted(t))); err != nil {
		t.Fatalf("strict decoding: %v", err)
	}
	if err := sdkErr(d.Validate()); err != nil {
		t.Fatalf("validation: %v", err)
	}
	if d.Uid == nil || *d.Uid != UID {
		t.Errorf("uid %v, want %q: a re-import must replace the dashboard, not copy it", d.Uid, UID)
	}
}

// The parts of the dashboard JSON the checks below read.
type (
	board struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []variable `json:"list"`
		} `json:"templating"`
	}
	panel struct {
		ID          int     `json:"id"`
		Type        string  `json:"type"`
		Title       string  `json:"title"`
		Description string  `json:"description"`
		Datasource  *dsRef  `json:"datasource"`
		GridPos     gridPos `json:"gridPos"`
		Targets     []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *dsRef `json:"datasource"`
		} `json:"targets"`
		Panels []panel `json:"panels"` // a collapsed row's panels
	}
	dsRef struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	gridPos  struct{ X, Y, W, H int }
	variable struct {
		Type       string `json:"type"`
		Name       string `json:"name"`
		Query      any    `json:"query"`
		Datasource *dsRef `json:"datasource"`
		Refresh    int    `json:"refresh"`
		Multi      bool   `json:"multi"`
		IncludeAll bool   `json:"includeAll"`
		AllValue   string `json:"allValue"`
	}
)

func decodeBoard(t *testing.T) board {
	t.Helper()
	var b board
	if err := json.Unmarshal(readCommitted(t), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// rowOf returns every panel with the title of the row it sits under.
func rowOf(b board) map[string][]panel {
	out := map[string][]panel{}
	row := ""
	for _, p := range b.Panels {
		if p.Type == "row" {
			row = p.Title
			out[row] = append(out[row], p.Panels...)
			continue
		}
		out[row] = append(out[row], p)
	}
	return out
}

func TestDashboardRowsAndVariables(t *testing.T) {
	b := decodeBoard(t)
	var rows []string
	for _, p := range b.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
		}
	}
	if want := []string{rowFleet, rowOrg, rowAgent}; !slices.Equal(rows, want) {
		t.Errorf("rows %q, want %q", rows, want)
	}
	if panels := rowOf(b)[""]; len(panels) > 0 {
		t.Errorf("%d panel(s) above the first row", len(panels))
	}

	vars := map[string]variable{}
	for _, v := range b.Templating.List {
		vars[v.Name] = v
	}
	tests := []struct {
		name, typ string
		query     any
		ds        string
	}{
		{datasourceVar, "datasource", "prometheus", ""},
		{jobVar, "query", "label_values(tokenwatch_build_info, job)", "${datasource}"},
		{instanceVar, "query", `label_values(tokenwatch_build_info{job=~"$job"}, instance)`, "${datasource}"},
		{teamVar, "query", `label_values(tokenwatch_org_info{job=~"$job",instance=~"$instance"}, team)`, "${datasource}"},
		{envVar, "query", `label_values(tokenwatch_org_info{job=~"$job",instance=~"$instance",team=~"$team"}, env)`, "${datasource}"},
		{labelsVar, "textbox", "", ""},
		{orgVar, "query", `label_values(tokenwatch_org_info{job=~"$job",instance=~"$instance",team=~"$team",env=~"$env",$labels}, org)`, "${datasource}"},
		{detailVar, "query", `label_values(tokenwatch_org_info{job=~"$job",instance=~"$instance",org=~"$org",team=~"$team",env=~"$env",$labels}, org)`, "${datasource}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := vars[tt.name]
			if !ok {
				t.Fatalf("no variable %q", tt.name)
			}
			if v.Type != tt.typ || v.Query != tt.query {
				t.Errorf("type %q query %v, want %q %v", v.Type, v.Query, tt.typ, tt.query)
			}
			if tt.ds != "" && (v.Datasource == nil || v.Datasource.UID != tt.ds) {
				t.Errorf("data source %+v, want uid %s", v.Datasource, tt.ds)
			}
		})
	}
	if v := vars[detailVar]; v.Multi || v.IncludeAll || v.Refresh == 0 {
		t.Errorf("%s: multi %v, includeAll %v, refresh %d; want one org, the list refreshed", detailVar, v.Multi, v.IncludeAll, v.Refresh)
	}
	for _, name := range []string{jobVar, instanceVar, teamVar, envVar, orgVar} {
		v := vars[name]
		if v.Refresh == 0 {
			t.Errorf("%s: the list is never refreshed: new values would not appear", name)
		}
		// "All" as a list of every org would be a regular expression of
		// 10,000 names in every query.
		if !v.Multi || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("%s: multi %v, includeAll %v, allValue %q; want a multi-value variable whose All is .*", name, v.Multi, v.IncludeAll, v.AllValue)
		}
	}
}

// coreTypes are the panel plugins every Grafana from 10 on has built in.
var coreTypes = []string{"stat", "timeseries", "table", "bargauge", "state-timeline"}

var (
	// selectors finds every series selector of a tokenwatch metric.
	selectors = regexp.MustCompile(`\btokenwatch_\w+(\{[^}]*\})?`)
	// pickedOrgsRE is the join that keeps to the orgs the variables pick.
	pickedOrgsRE = regexp.MustCompile(`\band on \(org\) tokenwatch_org_info\{[^}]*\}|group_left \(team, env\) tokenwatch_org_info\{[^}]*\}|^tokenwatch_org_info\{[^}]*\}$|count\(tokenwatch_org_info\{[^}]*\}\)`)
)

// followsVariables says why expr, a query of row, does not keep to what
// the dashboard's variables pick; "" when it does. Every selector keeps to
// the job and instance picked; outside the tokenwatch row, every selector
// keeps to the orgs picked and the query joins with tokenwatch_org_info
// for the label variables.
func followsVariables(row, expr string) string {
	for _, m := range selectors.FindAllStringSubmatch(expr, -1) {
		if !strings.Contains(m[1], `job=~"$job"`) || !strings.Contains(m[1], `instance=~"$instance"`) {
			return m[0] + " does not keep to $job and $instance"
		}
		if row == rowAgent {
			continue
		}
		// The org row shows the one org of org_detail, among those picked.
		if !strings.Contains(m[1], `org=~"$org"`) && (row != rowOrg || !strings.Contains(m[1], `org="$org_detail"`)) {
			return m[0] + " does not keep to $org"
		}
		if strings.HasPrefix(m[0], "tokenwatch_org_info{") {
			for _, v := range []string{`team=~"$team"`, `env=~"$env"`, `,$labels}`} {
				if !strings.Contains(m[1], v) {
					return m[0] + " does not keep to " + v
				}
			}
		}
	}
	if row == rowOrg && !strings.Contains(expr, `org="$org_detail"`) {
		return "the org row does not keep to $org_detail"
	}
	if row != rowAgent && !pickedOrgsRE.MatchString(expr) {
		return "no join with tokenwatch_org_info: the label variables do not apply"
	}
	if row == rowAgent && strings.Contains(expr, "$org") {
		return "the tokenwatch row's series have no org"
	}
	return ""
}

func TestDashboardPanels(t *testing.T) {
	b := decodeBoard(t)
	ids := map[int]string{}
	for row, panels := range rowOf(b) {
		for _, p := range panels {
			t.Run(row+"/"+p.Title, func(t *testing.T) {
				if prev, dup := ids[p.ID]; dup || p.ID == 0 {
					t.Errorf("id %d is not unique (also %q)", p.ID, prev)
				}
				ids[p.ID] = p.Title
				if !slices.Contains(coreTypes, p.Type) {
					t.Errorf("type %q is not a core panel of Grafana 10", p.Type)
				}
				if p.Title == "" || p.Description == "" {
					t.Error("a panel needs a title and a description that says what it shows")
				}
				if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
					t.Errorf("panel data source %+v, want the datasource variable", p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Fatal("no query")
				}
				refs := map[string]bool{}
				for _, q := range p.Targets {
					if q.RefID == "" || refs[q.RefID] {
						t.Errorf("refId %q is empty or repeated", q.RefID)
					}
					refs[q.RefID] = true
					if q.Datasource == nil || q.Datasource.UID != "${datasource}" {
						t.Errorf("query %s: data source %+v, want the datasource variable", q.RefID, q.Datasource)
					}
					if why := followsVariables(row, q.Expr); why != "" {
						t.Errorf("query %s: %s: %s", q.RefID, q.Expr, why)
					}
				}
			})
		}
	}
}

// TestDashboardAnnotations: alerts are marked on every time panel, for the
// orgs the variables pick.
func TestDashboardAnnotations(t *testing.T) {
	var b struct {
		Annotations struct {
			List []struct {
				Name, Expr, TitleFormat string
				Enable                  bool
				Datasource              *dsRef
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(readCommitted(t), &b); err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, a := range b.Annotations.List {
		if !a.Enable || a.Datasource == nil || a.Datasource.UID != "${datasource}" || a.TitleFormat == "" {
			t.Errorf("%s: enabled %v, data source %+v, title %q; want it on, from the datasource variable, titled", a.Name, a.Enable, a.Datasource, a.TitleFormat)
		}
		if why := followsVariables(rowFleet, a.Expr); why != "" {
			t.Errorf("%s: %s: %s", a.Name, a.Expr, why)
		}
		for _, m := range []string{"tokenwatch_alert_firing", "ALERTS{"} {
			if strings.Contains(a.Expr, m) {
				sources = append(sources, m)
			}
		}
	}
	if !slices.Equal(sources, []string{"tokenwatch_alert_firing", "ALERTS{"}) {
		t.Errorf("annotations read %q, want tokenwatch's own alerts and the rules' ALERTS", sources)
	}
}

func TestDashboardLayout(t *testing.T) {
	b := decodeBoard(t)
	var placed []panel
	for _, p := range b.Panels {
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%q at %+v lies outside the 24 columns of the grid", p.Title, g)
		}
		for _, q := range placed {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("%q at %+v overlaps %q at %+v", p.Title, g, q.Title, h)
			}
		}
		placed = append(placed, p)
	}
}

func TestProvisioning(t *testing.T) {
	read := func(t *testing.T, name string, v any) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "provisioning", name))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	t.Run("dashboards", func(t *testing.T) {
		var f struct {
			APIVersion int `yaml:"apiVersion"`
			Providers  []struct {
				Name                  string `yaml:"name"`
				OrgID                 int    `yaml:"orgId"`
				Folder                string `yaml:"folder"`
				Type                  string `yaml:"type"`
				DisableDeletion       bool   `yaml:"disableDeletion"`
				AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
				UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
				Options               struct {
					Path                      string `yaml:"path"`
					FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		read(t, "dashboards/tokenwatch.yml", &f)
		if f.APIVersion != 1 || len(f.Providers) != 1 {
			t.Fatalf("apiVersion %d with %d providers, want 1 and 1", f.APIVersion, len(f.Providers))
		}
		p := f.Providers[0]
		if p.Type != "file" || p.Folder == "" || !strings.HasPrefix(p.Options.Path, "/") {
			t.Errorf("provider %+v: want a file provider into a folder, reading an absolute path", p)
		}
	})
	t.Run("datasources", func(t *testing.T) {
		var f struct {
			APIVersion  int `yaml:"apiVersion"`
			Datasources []struct {
				Name      string            `yaml:"name"`
				Type      string            `yaml:"type"`
				UID       string            `yaml:"uid"`
				Access    string            `yaml:"access"`
				URL       string            `yaml:"url"`
				IsDefault bool              `yaml:"isDefault"`
				JSONData  map[string]string `yaml:"jsonData"`
			} `yaml:"datasources"`
		}
		read(t, "datasources/prometheus.yml", &f)
		if f.APIVersion != 1 || len(f.Datasources) != 1 {
			t.Fatalf("apiVersion %d with %d data sources, want 1 and 1", f.APIVersion, len(f.Datasources))
		}
		ds := f.Datasources[0]
		if ds.Type != "prometheus" || ds.URL == "" || ds.JSONData["timeInterval"] == "" {
			t.Errorf("data source %+v: want a prometheus one with its url and scrape interval", ds)
		}
	})
}
