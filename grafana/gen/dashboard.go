package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Names the dashboard's users and the tests rely on.
const (
	// UID is stable so that re-importing or provisioning replaces the dashboard
	// instead of adding a copy.
	UID = "tokenwatch"

	datasourceVar = "datasource"
	jobVar        = "job"
	instanceVar   = "instance"
	teamVar       = "team"
	envVar        = "env"
	labelsVar     = "labels"
	orgVar        = "org"
	detailVar     = "org_detail"

	rowFleet = "Fleet overview"
	rowOrg   = "Org: $org_detail"
	rowAgent = "tokenwatch itself"
)

// Grafana colours by name, as its own palette calls them.
const (
	green  = "green"
	red    = "red"
	orange = "orange"
	grey   = "text"
	blue   = "blue"
)

// The dashboard serves a fleet: every query keeps to the orgs that the
// variables pick. Per-org series are joined with tokenwatch_org_info, which
// carries the org's labels (team, env, anything under labels:), so a label
// filters every per-org metric although only tokenwatch_org_info has it.
// The "All" value of every variable is .*, never a list of every org: a
// fleet of 10,000 orgs would otherwise send a 200 KB regular expression.
const (
	// scraped keeps to the tokenwatch processes picked by job and instance.
	scraped = `job=~"$job",instance=~"$instance"`
	// orgMatchers are the matchers of a per-org series.
	orgMatchers = scraped + `,org=~"$org"`
	// pickedOrgs is one series per org the variables pick. $labels is free
	// PromQL matchers (region="eu"), empty by default: a trailing comma is
	// valid PromQL.
	pickedOrgs = `tokenwatch_org_info{` + orgMatchers + `,team=~"$team",env=~"$env",$labels}`
)

// detailMatchers are the matchers of the one org of the org row, picked
// among the orgs the other variables pick: with thousands picked, a row of
// per-org panels for each would be thousands of series per panel.
const detailMatchers = scraped + `,org="$org_detail"`

// detail selects metric for the org of the org row, if the variables pick it.
func detail(metric string) string {
	return metric + "{" + detailMatchers + "} and on (org) " + pickedOrgs
}

// perOrg selects metric for the orgs the variables pick; extra are more
// matchers ("outcome!=\"ok\"").
func perOrg(metric string, extra ...string) string {
	m := orgMatchers
	for _, e := range extra {
		m += "," + e
	}
	return metric + "{" + m + "} and on (org) " + pickedOrgs
}

// own selects a metric of the tokenwatch processes picked by job and instance.
func own(metric string) string { return metric + "{" + scraped + "}" }

// promDS points every panel and query at the data source the user picks in
// the datasource variable, so the dashboard imports without edits.
func promDS() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${" + datasourceVar + "}")}
}

// query is one PromQL target drawn over the time range.
func query(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().Datasource(promDS()).RefId(ref).Expr(expr).Range()
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// instant is one PromQL target evaluated at the end of the time range.
func instant(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().Datasource(promDS()).RefId(ref).Expr(expr).Instant().
		Format(prometheus.PromQueryFormatTimeSeries)
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// rows is one PromQL target evaluated at the end of the time range, one
// table row per series with its labels as columns.
func rows(ref, expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(promDS()).RefId(ref).Expr(expr).Instant().
		Format(prometheus.PromQueryFormatTable)
}

// step is a threshold: from this value on, this colour.
type step struct {
	from  float64
	color string
}

// thresholds colours a value: base below the first step, then each step's colour.
func thresholds(base string, steps ...step) *dashboard.ThresholdsConfigBuilder {
	list := []dashboard.Threshold{{Value: nil, Color: base}}
	for _, s := range steps {
		list = append(list, dashboard.Threshold{Value: cog.ToPtr(s.from), Color: s.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(list)
}

// words maps the values of a 0/1 gauge to words and colours.
func words(zero, zeroColor, one, oneColor string) []dashboard.ValueMapping {
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{
		Type: dashboard.MappingTypeValueToText,
		Options: map[string]dashboard.ValueMappingResult{
			"0": {Text: cog.ToPtr(zero), Color: cog.ToPtr(zeroColor), Index: cog.ToPtr[int32](0)},
			"1": {Text: cog.ToPtr(one), Color: cog.ToPtr(oneColor), Index: cog.ToPtr[int32](1)},
		},
	}}}
}

// healthWords are the words of the status page, so both read alike.
func healthWords() []dashboard.ValueMapping { return words("FAILING", red, "OK", green) }

// organize hides columns of a table and renames others; order lists the
// columns shown first, in that order.
func organize(exclude []string, rename map[string]string, order []string) dashboard.DataTransformerConfig {
	ex := map[string]bool{}
	for _, name := range exclude {
		ex[name] = true
	}
	index := map[string]int{}
	for i, name := range order {
		index[name] = i
	}
	return dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
		"excludeByName": ex,
		"renameByName":  rename,
		"indexByName":   index,
	}}
}

func merge() dashboard.DataTransformerConfig {
	return dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}
}

func cellBackground() dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}}
}

// statPanel is a single big number.
func statPanel(title, desc string, w uint32, targets ...*prometheus.DataqueryBuilder) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().Title(title).Description(desc).Datasource(promDS()).
		Span(w).Height(4).
		GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeBackground).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		Orientation(common.VizOrientationAuto)
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

// graph is a time series panel.
func graph(title, desc, unit string, w, h uint32, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).Datasource(promDS()).
		Span(w).Height(h).Unit(unit).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).
			DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

// bars is a time series panel of stacked bars, for counts by kind.
func bars(title, desc, unit string, w, h uint32, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	return graph(title, desc, unit, w, h, targets...).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
}

func tablePanel(title, desc string, w, h uint32, targets ...*prometheus.DataqueryBuilder) *table.PanelBuilder {
	p := table.NewPanelBuilder().Title(title).Description(desc).Datasource(promDS()).Span(w).Height(h).
		// The SDK leaves the footer's reducer null, which strict decoding refuses.
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}))
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

func barGauge(title, desc, unit string, w, h uint32, targets ...*prometheus.DataqueryBuilder) *bargauge.PanelBuilder {
	p := bargauge.NewPanelBuilder().Title(title).Description(desc).Datasource(promDS()).
		Span(w).Height(h).Unit(unit).
		Orientation(common.VizOrientationHorizontal).
		DisplayMode(common.BarGaugeDisplayModeBasic).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		Orientation(common.VizOrientationAuto)
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

// grid lays panels out as Grafana's classic dashboard model wants them:
// rows of 24 columns, each panel after the previous one, wrapping when a
// line is full; a row starts a new line.
type grid struct {
	panels       []dashboard.PanelOrRowPanel
	x, y, height uint32
	errs         []error
}

func (g *grid) row(title string) {
	r, err := dashboard.NewRowBuilder(title).Build()
	if err != nil {
		g.errs = append(g.errs, fmt.Errorf("row %q: %w", title, err))
		return
	}
	y := g.y + g.height
	r.GridPos = &dashboard.GridPos{X: 0, Y: y, W: 24, H: 1}
	g.panels = append(g.panels, dashboard.PanelOrRowPanel{RowPanel: &r})
	g.x, g.y, g.height = 0, y+1, 0
}

func (g *grid) add(b cog.Builder[dashboard.Panel]) {
	p, err := b.Build()
	if err != nil {
		g.errs = append(g.errs, err)
		return
	}
	if p.GridPos == nil {
		p.GridPos = dashboard.NewGridPos()
	}
	p.GridPos.X, p.GridPos.Y = g.x, g.y
	g.panels = append(g.panels, dashboard.PanelOrRowPanel{Panel: &p})
	g.x += p.GridPos.W
	g.height = max(g.height, p.GridPos.H)
	if g.x >= 24 {
		g.x, g.y, g.height = 0, g.y+g.height, 0
	}
}

// Where an org's row links to.
const (
	// statusLink is the org's entry on the status page of the tokenwatch
	// that checks it (the page anchors each org as #org-NAME). It assumes
	// the page is at the address Prometheus scrapes; behind a proxy or
	// --web.external-url, edit the link.
	statusLink = "http://${__data.fields.instance}/#org-${__data.fields.org}"
	docsBase   = "https://github.com/tokenwatch/tokenwatch/blob/main/docs/"
	// outcomeLink opens docs/outcomes.md at the outcome's line of its table.
	outcomeLink = docsBase + "outcomes.md#:~:text=${__value.raw}"
)

func links(title, url string) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "links", Value: []map[string]any{{"title": title, "url": url, "targetBlank": true}}}
}

// withOutcome adds the org's current outcome and its team and env labels
// to a per-org expression, for tables; the join with tokenwatch_org_info
// keeps to the orgs the variables pick.
func withOutcome(expr string) string {
	return `(` + expr + `) * on (job, instance, org) group_left (outcome, team, env) (tokenwatch_check_outcome{` + orgMatchers +
		`} * on (job, instance, org) group_left (team, env) ` + pickedOrgs + `)`
}

// fleetRow shows every org the variables pick at once: how many are
// healthy, which fail, why, and which alerts fire.
func fleetRow(g *grid) {
	g.row(rowFleet)
	g.add(statPanel("Orgs configured",
		"Orgs in the configuration of the tokenwatch instances picked, that the variables pick.", 3,
		instant("A", `count(`+pickedOrgs+`)`, "")).
		Thresholds(thresholds(grey)))
	g.add(statPanel("Orgs healthy",
		"Orgs whose last check was healthy: token obtained, introspection active, resource call accepted, expectations met.", 3,
		instant("A", `sum(`+perOrg("tokenwatch_check_success")+`)`, "")).
		Thresholds(thresholds(green)))
	g.add(statPanel("Orgs failing",
		"Orgs whose last check was not healthy. The table below says which; the status page and `tokenwatch diagnose` say why and what to change.", 3,
		instant("A", `sum(1 - (`+perOrg("tokenwatch_check_success")+`))`, "")).
		Thresholds(thresholds(green, step{1, red})))
	g.add(statPanel("Orgs not checked yet",
		"Configured orgs whose first check has not finished: just added, or waiting for a free slot.", 3,
		instant("A", `count(`+pickedOrgs+`) - (count(`+perOrg("tokenwatch_check_success")+`) or vector(0))`, "")).
		Thresholds(thresholds(green, step{1, orange})))
	g.add(statPanel("Tokens expiring within 1h",
		"Tokens seen in the last checks that expire within the hour or have expired.", 3,
		instant("A", `sum((tokenwatch_token_expiry_timestamp_seconds{`+orgMatchers+`} - time() < bool 3600) and on (org) `+pickedOrgs+`)`, "")).
		Thresholds(thresholds(green, step{1, orange})))
	g.add(statPanel("Alerts firing",
		"Alerts tokenwatch fires now (TokenIntrospectionInactive, TokenAcquisitionFailed, ...) for the orgs picked.", 3,
		instant("A", `sum(`+perOrg("tokenwatch_alert_firing")+`)`, "")).
		NoValue("0").
		Thresholds(thresholds(green, step{1, red})))
	g.add(statPanel("Orgs below 10% of API requests",
		"Salesforce orgs with less than 10% of their daily API request allowance left (DailyApiRequests of the REST API's limits, tokenwatch_api_requests_remaining / tokenwatch_api_requests_max). Integrations start failing with REQUEST_LIMIT_EXCEEDED at 0.", 3,
		instant("A", `count((tokenwatch_api_requests_remaining{`+orgMatchers+`} / tokenwatch_api_requests_max{`+orgMatchers+`} < 0.1) and on (org) `+pickedOrgs+`)`, "")).
		NoValue("0").
		Thresholds(thresholds(green, step{1, orange})))
	g.add(statPanel("Signing certificates expiring within 30d",
		"Orgs whose JWT signing certificate (grant.certificate_file) expires within 30 days: renew it and upload it to the connected app before then, or jwt_bearer logins fail.", 3,
		instant("A", `count((tokenwatch_signing_certificate_expiry_timestamp_seconds{`+orgMatchers+`} - time() < 30 * 86400) and on (org) `+pickedOrgs+`)`, "")).
		NoValue("0").
		Thresholds(thresholds(green, step{1, orange})))

	g.add(tablePanel("Orgs, worst first",
		"Every org picked, with its last check's state and outcome, its team and env, when its token expires and how long ago it was checked. Click an org for its entry on the status page, an outcome for its cause and fix in docs/outcomes.md; pick one in Org in detail for the row below.", 12, 10,
		rows("A", withOutcome(`tokenwatch_check_success{`+orgMatchers+`}`)),
		rows("B", withOutcome(`tokenwatch_token_expiry_timestamp_seconds{`+orgMatchers+`} - time()`)),
		rows("C", withOutcome(`time() - tokenwatch_check_last_run_timestamp_seconds{`+orgMatchers+`}`))).
		WithTransformation(merge()).
		WithTransformation(organize(
			[]string{"Time", "job"},
			map[string]string{"Value #A": "State", "Value #B": "Token expires in", "Value #C": "Last check, seconds ago"},
			[]string{"org", "Value #A", "outcome", "Value #B", "Value #C", "team", "env", "instance"})).
		SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName("State")}).
		OverrideByName("State", []dashboard.DynamicConfigValue{
			{Id: "mappings", Value: healthWords()}, cellBackground(),
		}).
		OverrideByName("org", []dashboard.DynamicConfigValue{links("Status page entry of ${__value.raw}", statusLink)}).
		OverrideByName("outcome", []dashboard.DynamicConfigValue{links("What ${__value.raw} means and how to fix it", outcomeLink)}).
		OverrideByName("Token expires in", []dashboard.DynamicConfigValue{{Id: "unit", Value: "dtdurations"}}).
		OverrideByName("Last check, seconds ago", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}}))
	g.add(bars("Checks by outcome",
		"Finished checks per minute, by outcome. Anything but ok is a problem; docs/outcomes.md names the cause and fix of each.", "opm", 12, 10,
		query("A", `sum by (outcome) (rate(tokenwatch_checks_total{`+orgMatchers+`}[$__rate_interval]) and on (org) `+pickedOrgs+`) * 60`, "{{outcome}}")))

	g.add(barGauge("Outcomes in the selected range",
		"Checks finished in the dashboard's time range, by outcome.", "short", 12, 8,
		instant("A", `sort_desc(sum by (outcome) (increase(tokenwatch_checks_total{`+orgMatchers+`}[$__range]) and on (org) `+pickedOrgs+`))`, "{{outcome}}")).
		Decimals(0).
		Thresholds(thresholds(blue)))
	g.add(tablePanel("Firing alerts by org",
		"Alerts that fire now, by org. Click an org for its entry on the status page; the alert's description and fix are in Alertmanager and on the status page.", 12, 8,
		rows("A", `max by (alertname, org, instance) (`+perOrg("tokenwatch_alert_firing")+`)`)).
		NoValue("No alert is firing").
		WithTransformation(organize([]string{"Time", "Value"}, map[string]string{}, []string{"alertname", "org", "instance"})).
		OverrideByName("org", []dashboard.DynamicConfigValue{links("Status page entry of ${__value.raw}", statusLink)}))

	g.add(barGauge("Salesforce API requests left, lowest first",
		"The share of each Salesforce org's daily API request allowance left (tokenwatch_api_requests_remaining / tokenwatch_api_requests_max, from the REST API's limits), the 20 lowest. Orange below 10%, red below 5%: at 0 the org's integrations fail with REQUEST_LIMIT_EXCEEDED until the 24-hour window moves on.", "percentunit", 12, 8,
		instant("A", `bottomk(20, tokenwatch_api_requests_remaining{`+orgMatchers+`} / tokenwatch_api_requests_max{`+orgMatchers+`} and on (org) `+pickedOrgs+`)`, "{{org}}")).
		Min(0).Max(1).
		Thresholds(thresholds(red, step{0.05, orange}, step{0.1, green})))
	g.add(barGauge("Signing certificates, soonest to expire",
		"Time left on the certificate each jwt_bearer org signs its assertions with (grant.certificate_file; tokenwatch_signing_certificate_expiry_timestamp_seconds), the 20 soonest. Orange within 30 days, red within 7.", "dtdurations", 12, 8,
		instant("A", `bottomk(20, tokenwatch_signing_certificate_expiry_timestamp_seconds{`+orgMatchers+`} - time() and on (org) `+pickedOrgs+`)`, "{{org}}")).
		Thresholds(thresholds(red, step{7 * 86400, orange}, step{30 * 86400, green})))

	g.add(graph("Step latency across the orgs picked",
		"How long each step's HTTP exchanges took (token, introspect, probe, revoke) in the orgs' last checks: the median and the 99th percentile across the orgs the variables pick, from tokenwatch_step_last_duration_seconds. The fleet-wide histogram, which has no org label, is in the tokenwatch row.", "s", 24, 8,
		query("A", `quantile by (step) (0.5, `+perOrg("tokenwatch_step_last_duration_seconds")+`)`, "{{step}} p50"),
		query("B", `quantile by (step) (0.99, `+perOrg("tokenwatch_step_last_duration_seconds")+`)`, "{{step}} p99")))
}

// orgRow explains one org, picked with the org_detail variable.
func orgRow(g *grid) {
	g.row(rowOrg)
	g.add(statPanel("State",
		"The last check of this org: OK, or FAILING with its outcome in the panels below.", 3,
		instant("A", detail("tokenwatch_check_success"), "{{org}}")).
		Mappings(healthWords()).
		Thresholds(thresholds(red, step{1, green})))
	g.add(statPanel("Introspection",
		"What introspection said about the token of the last check. Inactive while the resource call works is a permission gap (introspection_not_permitted), not a dead token.", 3,
		instant("A", detail("tokenwatch_introspection_active"), "{{org}}")).
		Mappings(words("inactive", red, "active", green)).
		Thresholds(thresholds(red, step{1, green})))
	g.add(statPanel("Token expires in",
		"Time left until the token seen in the last check expires. On Salesforce it slides with use.", 3,
		instant("A", `tokenwatch_token_expiry_timestamp_seconds{`+detailMatchers+`} - time() and on (org) `+pickedOrgs, "{{org}}")).
		Unit("dtdurations").
		Thresholds(thresholds(red, step{300, orange}, step{3600, green})))
	g.add(statPanel("Token lifetime",
		"Expiry minus issue time of the token seen in the last check. A shrinking lifetime is an auth regression.", 3,
		instant("A", detail("tokenwatch_token_lifetime_seconds"), "{{org}}")).
		Unit("dtdurations").
		Thresholds(thresholds(grey)))
	g.add(statPanel("Last check",
		"When the last check of this org finished. Older than the org's schedule means checks are late.", 3,
		instant("A", `tokenwatch_check_last_run_timestamp_seconds{`+detailMatchers+`} * 1000 and on (org) `+pickedOrgs, "{{org}}")).
		Unit("dateTimeFromNow").
		ColorMode(common.BigValueColorModeNone))
	g.add(statPanel("Check duration",
		"How long the last check took, all steps together.", 3,
		instant("A", detail("tokenwatch_check_duration_seconds"), "{{org}}")).
		Unit("s").
		Thresholds(thresholds(green, step{1, orange}, step{5, red})))
	g.add(statPanel("API requests left",
		"Salesforce: the share of the org's daily API request allowance left (DailyApiRequests). Below 10% integrations are close to REQUEST_LIMIT_EXCEEDED.", 3,
		instant("A", `tokenwatch_api_requests_remaining{`+detailMatchers+`} / tokenwatch_api_requests_max{`+detailMatchers+`} and on (org) `+pickedOrgs, "{{org}}")).
		Unit("percentunit").
		NoValue("not Salesforce").
		Thresholds(thresholds(red, step{0.05, orange}, step{0.1, green})))
	g.add(statPanel("Signing certificate expires in",
		"jwt_bearer: time left on the certificate the org signs its assertions with (grant.certificate_file).", 3,
		instant("A", `tokenwatch_signing_certificate_expiry_timestamp_seconds{`+detailMatchers+`} - time() and on (org) `+pickedOrgs, "{{org}}")).
		Unit("dtdurations").
		NoValue("no certificate_file").
		Thresholds(thresholds(red, step{7 * 86400, orange}, step{30 * 86400, green})))

	g.add(statetimeline.NewPanelBuilder().Title("Check and introspection over time").
		Description("Each check's verdict and what introspection answered, over time.").
		Datasource(promDS()).Span(12).Height(6).
		WithTarget(query("A", detail("tokenwatch_check_success"), "{{org}} check")).
		WithTarget(query("B", detail("tokenwatch_introspection_active"), "{{org}} introspection")).
		Mappings(words("FAILING / inactive", red, "OK / active", green)).
		Thresholds(thresholds(red, step{1, green})).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true))
	g.add(graph("Time to expiry",
		"Time left on the token each check saw. A sawtooth is normal for fresh tokens; a line heading to zero is not.", "s", 12, 6,
		query("A", `tokenwatch_token_expiry_timestamp_seconds{`+detailMatchers+`} - time() and on (org) `+pickedOrgs, "{{org}} expires in")))

	g.add(graph("Step latency",
		"How long each step's HTTP exchanges took (token, introspect, probe, revoke), check after check: tokenwatch_step_last_duration_seconds, the last check's durations, as each scrape saw them. For percentiles of this org, turn on metrics.step_histograms (tokenwatch_step_duration_seconds, 56 series); across orgs, see the fleet row.", "s", 12, 8,
		query("A", detail("tokenwatch_step_last_duration_seconds"), "{{org}} {{step}}")))
	g.add(barGauge("Last check by step and phase",
		"Where the time of each step went in the last check. With metrics.phases on for the org, by phase: resolve, connect, tls, processing (the server thinking), transfer, leaving out phases that took no time; otherwise each step's total.", "s", 12, 8,
		instant("A", `(tokenwatch_step_phase_duration_seconds{`+detailMatchers+`} > 0 or on (org, step) tokenwatch_step_last_duration_seconds{`+detailMatchers+`}) and on (org) `+pickedOrgs, "{{org}} {{step}} {{phase}}")).
		Thresholds(thresholds(blue)))

	g.add(bars("Outcomes over time",
		"This org's checks per minute, by outcome.", "opm", 12, 7,
		query("A", `sum by (outcome) (rate(tokenwatch_checks_total{`+detailMatchers+`}[$__rate_interval]) and on (org) `+pickedOrgs+`) * 60`, "{{outcome}}")))
	g.add(tablePanel("Recent outcomes",
		"This org's checks in the dashboard's time range, by outcome, most frequent first. Click an outcome for its cause and fix.", 6, 7,
		rows("A", `sort_desc(sum by (outcome) (increase(tokenwatch_checks_total{`+detailMatchers+`}[$__range]) and on (org) `+pickedOrgs+`) > 0)`)).
		WithTransformation(organize([]string{"Time"}, map[string]string{"Value": "Checks"}, []string{"outcome", "Value"})).
		OverrideByName("Checks", []dashboard.DynamicConfigValue{{Id: "decimals", Value: 0}}).
		OverrideByName("outcome", []dashboard.DynamicConfigValue{links("What ${__value.raw} means and how to fix it", outcomeLink)}))
	g.add(tablePanel("Configuration",
		"How this org is checked: provider, grant and its configured labels. Click the org for its entry on the status page.", 6, 7,
		rows("A", `tokenwatch_org_info{`+orgMatchers+`,org="$org_detail",team=~"$team",env=~"$env",$labels}`)).
		WithTransformation(organize([]string{"Time", "Value", "__name__", "job"}, map[string]string{}, []string{"org", "provider", "grant"})).
		OverrideByName("org", []dashboard.DynamicConfigValue{links("Status page entry of ${__value.raw}", statusLink)}))
}

// agentRow watches tokenwatch itself: is it keeping up, can it notify, did
// its configuration load. Its series have no org: job and instance pick.
func agentRow(g *grid) {
	g.row(rowAgent)
	g.add(graph("Check rate",
		"Checks finished per second, by tokenwatch instance.", "ops", 8, 7,
		query("A", `sum by (instance) (rate(`+own("tokenwatch_checks_total")+`[$__rate_interval]))`, "{{instance}}")))
	g.add(graph("Scheduling lag",
		"How long due checks waited for a free slot under max_concurrent_checks. Growing lag means raise max_concurrent_checks, lengthen schedules or add shards.", "s", 8, 7,
		query("A", `histogram_quantile(0.5, sum by (le, instance) (rate(`+own("tokenwatch_check_queue_wait_seconds_bucket")+`[$__rate_interval])))`, "p50 {{instance}}"),
		query("B", `histogram_quantile(0.99, sum by (le, instance) (rate(`+own("tokenwatch_check_queue_wait_seconds_bucket")+`[$__rate_interval])))`, "p99 {{instance}}")))
	g.add(graph("Running checks",
		"Checks running at once, by instance; at max_concurrent_checks for long means checks queue.", "short", 8, 7,
		query("A", `sum by (instance) (`+own("tokenwatch_checks_running")+`)`, "{{instance}}")).
		Decimals(0).Min(0))

	// The classic buckets, or the native histogram where Prometheus
	// scrapes it instead of them.
	fleetQuantile := func(ref, q string) *prometheus.DataqueryBuilder {
		return query(ref, `histogram_quantile(`+q+`, sum by (le, step) (rate(`+own("tokenwatch_fleet_step_duration_seconds_bucket")+`[$__rate_interval])))`+
			` or histogram_quantile(`+q+`, sum by (step) (rate(`+own("tokenwatch_fleet_step_duration_seconds")+`[$__rate_interval])))`,
			"{{step}} p"+q[2:])
	}
	g.add(graph("Step latency, every org of the instances",
		"Latency of each step's HTTP exchanges (token, introspect, probe, revoke) across every org of the tokenwatch instances picked: median and 99th percentile, from the fleet-wide histogram tokenwatch_fleet_step_duration_seconds (by step and provider, no org label, so the org variables do not apply; classic buckets, or the native histogram where Prometheus scrapes those). The orgs picked are in the fleet row.", "s", 24, 8,
		fleetQuantile("A", "0.5"), fleetQuantile("B", "0.99")))

	g.add(bars("Notifications",
		"Alerts sent per second, by destination (Alertmanager, webhook): accepted, failed (an attempt failed; retried unless refused) and dropped, by reason (refused, queue_full, shutdown). Failures delay alerts; drops mean alerts do not reach people.", "ops", 8, 7,
		query("A", `sum by (destination) (rate(`+own("tokenwatch_notifications_total")+`[$__rate_interval])) - sum by (destination) (rate(`+own("tokenwatch_notifications_failed_total")+`[$__rate_interval]))`, "{{destination}} accepted"),
		query("B", `sum by (destination) (rate(`+own("tokenwatch_notifications_failed_total")+`[$__rate_interval]))`, "{{destination}} failed"),
		query("C", `sum by (destination, reason) (rate(`+own("tokenwatch_notifications_dropped_total")+`[$__rate_interval]))`, "{{destination}} dropped ({{reason}})")))
	g.add(graph("Notification queue",
		"Notifications waiting to be sent, by destination. A queue that only grows means a destination is down.", "short", 8, 7,
		query("A", `sum by (destination) (`+own("tokenwatch_notification_queue_length")+`)`, "{{destination}}")).
		Decimals(0).Min(0))
	g.add(bars("Configuration reloads",
		"Loads and reloads of the configuration (start, SIGHUP, POST /-/reload, a change to the files of org_files), by result. A refused reload keeps the previous configuration running.", "short", 8, 7,
		query("A", `sum by (result) (increase(`+own("tokenwatch_config_reloads_total")+`[$__rate_interval]))`, "{{result}}")).
		Decimals(0))

	g.add(statPanel("Last reload",
		"Whether the last configuration reload of each instance succeeded. FAILED: the log and the answer to /-/reload say why (a problem in a file of org_files names the file and the field).", 8,
		instant("A", own("tokenwatch_config_last_reload_successful"), "{{instance}}")).
		Mappings(words("FAILED", red, "OK", green)).
		Thresholds(thresholds(red, step{1, green})))
	g.add(statPanel("Last successful reload",
		"When each instance last loaded its configuration successfully.", 8,
		instant("A", `max by (instance) (`+own("tokenwatch_config_last_reload_success_timestamp_seconds")+`) * 1000`, "{{instance}}")).
		Unit("dateTimeFromNow").
		ColorMode(common.BigValueColorModeNone))
	g.add(tablePanel("Build",
		"Version of every tokenwatch instance.", 8, 4,
		rows("A", own("tokenwatch_build_info"))).
		WithTransformation(organize([]string{"Time", "Value", "__name__", "job"}, map[string]string{}, []string{"instance", "version"})))
}

// allOf is the "All" choice of a multi-value variable: every value, as
// the regular expression .*.
func allOf() dashboard.VariableOption {
	return dashboard.VariableOption{
		Selected: cog.ToPtr(true),
		Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
		Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
	}
}

// pick is a multi-value query variable over the values of label in the
// series selected, "All" (.*) at first.
func pick(name, label, desc, selector, valuesOf string) *dashboard.QueryVariableBuilder {
	q := `label_values(` + selector + `, ` + valuesOf + `)`
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Description(desc).
		Datasource(promDS()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).
		Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalCaseInsensitiveAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(allOf())
}

// detailQuery lists the orgs the other variables pick.
const detailQuery = `label_values(` + pickedOrgs + `, org)`

// variables are the dashboard's choices, each narrowing the next.
func variables() []cog.Builder[dashboard.VariableModel] {
	return []cog.Builder[dashboard.VariableModel]{
		dashboard.NewDatasourceVariableBuilder(datasourceVar).
			Label("Data source").
			Type("prometheus"),
		pick(jobVar, "Job", "The Prometheus jobs that scrape tokenwatch.",
			`tokenwatch_build_info`, "job"),
		pick(instanceVar, "Instance", "The tokenwatch processes (replicas, shards).",
			`tokenwatch_build_info{job=~"$job"}`, "instance"),
		pick(teamVar, "Team", "The team label of the orgs (labels: {team: ...} in the configuration). All includes orgs without one.",
			`tokenwatch_org_info{`+scraped+`}`, "team"),
		pick(envVar, "Env", "The env label of the orgs (labels: {env: ...}). All includes orgs without one.",
			`tokenwatch_org_info{`+scraped+`,team=~"$team"}`, "env"),
		dashboard.NewTextBoxVariableBuilder(labelsVar).
			Label("Other org labels").
			Description(`PromQL matchers on any other label of tokenwatch_org_info (the org's labels:, provider, grant), comma-separated: region="eu",tier!="free". Empty picks every org.`).
			DefaultValue(dashboard.StringOrMap{String: cog.ToPtr("")}).
			Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("")},
				Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("")},
			}),
		pick(orgVar, "Org", "The orgs shown, among those the labels pick.",
			`tokenwatch_org_info{`+scraped+`,team=~"$team",env=~"$env",$labels}`, "org"),
		dashboard.NewQueryVariableBuilder(detailVar).
			Label("Org in detail").
			Description("The one org of the org row, among the orgs picked.").
			Datasource(promDS()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(detailQuery)}).
			Definition(detailQuery).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalCaseInsensitiveAsc),
	}
}

// annotations mark when alerts fired and resolved on every time panel:
// Grafana draws a region for each time span a query's series exists.
func annotations() []cog.Builder[dashboard.AnnotationQuery] {
	return []cog.Builder[dashboard.AnnotationQuery]{
		dashboard.NewAnnotationQueryBuilder().
			Name("tokenwatch alerts").
			Datasource(promDS()).
			Enable(true).
			IconColor(red).
			Expr(`max by (alertname, org) (` + perOrg("tokenwatch_alert_firing") + `)`).
			Step("30s").
			TitleFormat("{{alertname}}").
			TextFormat("{{org}}: fired (the region's start) until resolved (its end); sent by tokenwatch to its Alertmanagers and webhooks").
			TagKeys("alertname,org").
			UseValueForTime(false),
		dashboard.NewAnnotationQueryBuilder().
			Name("Prometheus alerts (tokenwatch rules)").
			Datasource(promDS()).
			Enable(true).
			IconColor(orange).
			Expr(`max by (alertname, org, reason, severity) (ALERTS{alertstate="firing",org=~"$org"} and on (org) ` + pickedOrgs + `)`).
			Step("30s").
			TitleFormat("{{alertname}}").
			TextFormat("{{org}} ({{reason}}, {{severity}}): firing in Prometheus (configs/prometheus/tokenwatch-rules.yml) until resolved").
			TagKeys("alertname,org,reason,severity").
			UseValueForTime(false),
	}
}

// Board is Grafana's classic dashboard JSON model, the one every Grafana
// version imports and provisions from files. The SDK deprecates its own
// type of it (and the builder) in favour of the v2 schema, which Grafana
// reads only through its newer dashboard API; the panels, variables,
// annotations and links here still come from the SDK's builders.
type Board struct {
	UID                  string                               `json:"uid"`
	Title                string                               `json:"title"`
	Description          string                               `json:"description"`
	Tags                 []string                             `json:"tags"`
	Timezone             common.TimeZone                      `json:"timezone"`
	Editable             bool                                 `json:"editable"`
	GraphTooltip         dashboard.DashboardCursorSync        `json:"graphTooltip"`
	Time                 boardTime                            `json:"time"`
	FiscalYearStartMonth uint8                                `json:"fiscalYearStartMonth"`
	Refresh              string                               `json:"refresh"`
	SchemaVersion        uint16                               `json:"schemaVersion"`
	Links                []dashboard.DashboardLink            `json:"links"`
	Panels               []dashboard.PanelOrRowPanel          `json:"panels"`
	Templating           boardList[dashboard.VariableModel]   `json:"templating"`
	Annotations          boardList[dashboard.AnnotationQuery] `json:"annotations"`
}

type boardTime struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type boardList[T any] struct {
	List []T `json:"list"`
}

// schemaVersion is the classic model's version the SDK writes.
const schemaVersion = 42

// Dashboard builds the tokenwatch dashboard.
func Dashboard() (Board, error) {
	b := Board{
		UID:   UID,
		Title: "tokenwatch",
		Description: "OAuth 2.0 token checks by tokenwatch across a fleet: which orgs fail and why, token expiry and lifetime, " +
			"Salesforce API allowance and signing certificates, step latencies, and the health of tokenwatch itself. " +
			"Pick orgs by job, instance, team, env, any other org label, or name.",
		Tags:                 []string{"tokenwatch", "oauth"},
		Timezone:             common.TimeZoneBrowser,
		Editable:             true,
		GraphTooltip:         dashboard.DashboardCursorSyncCrosshair,
		Time:                 boardTime{From: "now-1h", To: "now"},
		FiscalYearStartMonth: 0,
		Refresh:              "30s",
		SchemaVersion:        schemaVersion,
	}
	var errs []error
	for _, l := range []*dashboard.DashboardLinkBuilder{
		dashboard.NewDashboardLinkBuilder("Outcomes: causes and fixes").Url(docsBase + "outcomes.md"),
		dashboard.NewDashboardLinkBuilder("Alert runbooks").Url(docsBase + "alerting.md"),
	} {
		link, err := l.Type(dashboard.DashboardLinkTypeLink).Icon("doc").TargetBlank(true).
			Tags([]string{}).AsDropdown(false).IncludeVars(false).KeepTime(false).Build()
		if err != nil {
			errs = append(errs, err)
		}
		// The SDK's default tucks the link away in Grafana 12's controls
		// menu; without it, the link shows in the dashboard's top bar.
		link.Placement = nil
		b.Links = append(b.Links, link)
	}
	for _, v := range variables() {
		m, err := v.Build()
		if err != nil {
			errs = append(errs, err)
		}
		b.Templating.List = append(b.Templating.List, m)
	}
	for _, a := range annotations() {
		q, err := a.Build()
		if err != nil {
			errs = append(errs, err)
		}
		// As for links: the toggles show in the top bar.
		q.Placement = nil
		b.Annotations.List = append(b.Annotations.List, q)
	}
	g := &grid{}
	fleetRow(g)
	orgRow(g)
	agentRow(g)
	errs = append(errs, g.errs...)
	if err := errors.Join(errs...); err != nil {
		return b, fmt.Errorf("build the dashboard: %w", err)
	}
	b.Panels = g.panels
	// Grafana needs panel ids unique within the dashboard; number them in
	// reading order so that links to a panel (viewPanel=N) stay stable.
	var id uint32
	for i := range b.Panels {
		id++
		if p := b.Panels[i].Panel; p != nil {
			p.Id = cog.ToPtr(id)
		}
		if r := b.Panels[i].RowPanel; r != nil {
			r.Id = id
		}
	}
	return b, nil
}

// Render returns the dashboard as the JSON file users import.
func Render() ([]byte, error) {
	d, err := Dashboard()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	// PromQL's comparison operators must stay readable in the file.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode the dashboard: %w", err)
	}
	return buf.Bytes(), nil
}
