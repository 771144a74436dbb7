package main

import (
	"bytes"
	"encoding/json"
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
	orgVar        = "org"

	rowFleet = "Fleet overview"
	rowOrg   = "Org: $org"
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

// fleetRow shows every org at once: how many are healthy, which fail, why,
// and which alerts fire.
func fleetRow(b *dashboard.DashboardBuilder) {
	b.WithRow(dashboard.NewRowBuilder(rowFleet))
	b.WithPanel(statPanel("Orgs configured",
		"Orgs in the configuration of every scraped tokenwatch.", 4,
		instant("A", `count(tokenwatch_org_info)`, "")).
		Thresholds(thresholds(grey)))
	b.WithPanel(statPanel("Orgs healthy",
		"Orgs whose last check was healthy: token obtained, introspection active, resource call accepted, expectations met.", 4,
		instant("A", `sum(tokenwatch_check_success)`, "")).
		Thresholds(thresholds(green)))
	b.WithPanel(statPanel("Orgs failing",
		"Orgs whose last check was not healthy. The table below says which; the status page and `tokenwatch diagnose` say why and what to change.", 4,
		instant("A", `sum(1 - tokenwatch_check_success)`, "")).
		Thresholds(thresholds(green, step{1, red})))
	b.WithPanel(statPanel("Orgs not checked yet",
		"Configured orgs whose first check has not finished: just added, or waiting for a free slot.", 4,
		instant("A", `count(tokenwatch_org_info) - count(tokenwatch_check_success)`, "")).
		Thresholds(thresholds(green, step{1, orange})))
	b.WithPanel(statPanel("Tokens expiring within 1h",
		"Tokens seen in the last checks that expire within the hour or have expired.", 4,
		instant("A", `sum((tokenwatch_token_expiry_timestamp_seconds - time()) < bool 3600)`, "")).
		Thresholds(thresholds(green, step{1, orange})))
	b.WithPanel(statPanel("Alerts firing",
		"Alerts tokenwatch fires now (TokenIntrospectionInactive, TokenAcquisitionFailed, ...), across all orgs.", 4,
		instant("A", `sum(tokenwatch_alert_firing)`, "")).
		NoValue("0").
		Thresholds(thresholds(green, step{1, red})))

	b.WithPanel(tablePanel("Orgs, worst first",
		"Every org with the state of its last check, when its token expires and how long ago it was checked. Select one in the org variable for its detail below.", 12, 10,
		rows("A", `tokenwatch_check_success`),
		rows("B", `tokenwatch_token_expiry_timestamp_seconds - time()`),
		rows("C", `time() - tokenwatch_check_last_run_timestamp_seconds`)).
		WithTransformation(merge()).
		WithTransformation(organize(
			[]string{"Time", "instance", "job"},
			map[string]string{"Value #A": "State", "Value #B": "Token expires in", "Value #C": "Last check, seconds ago"},
			[]string{"org", "Value #A", "Value #B", "Value #C"})).
		SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName("State")}).
		OverrideByName("State", []dashboard.DynamicConfigValue{
			{Id: "mappings", Value: healthWords()}, cellBackground(),
		}).
		OverrideByName("Token expires in", []dashboard.DynamicConfigValue{{Id: "unit", Value: "dtdurations"}}).
		OverrideByName("Last check, seconds ago", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}}))
	b.WithPanel(bars("Checks by outcome",
		"Finished checks per minute, by outcome. Anything but ok is a problem; docs/outcomes.md names the cause and fix of each.", "opm", 12, 10,
		query("A", `sum by (outcome) (rate(tokenwatch_checks_total[$__rate_interval])) * 60`, "{{outcome}}")))

	b.WithPanel(barGauge("Outcomes in the selected range",
		"Checks finished in the dashboard's time range, by outcome.", "short", 12, 8,
		instant("A", `sort_desc(sum by (outcome) (increase(tokenwatch_checks_total[$__range])))`, "{{outcome}}")).
		Decimals(0).
		Thresholds(thresholds(blue)))
	b.WithPanel(tablePanel("Firing alerts by org",
		"Alerts that fire now, by org. The alert's description and fix are in Alertmanager and on the status page.", 12, 8,
		rows("A", `max by (alertname, org) (tokenwatch_alert_firing) > 0`)).
		NoValue("No alert is firing").
		WithTransformation(organize([]string{"Time", "Value"}, map[string]string{}, []string{"alertname", "org"})))

	// The classic buckets, or the native histogram where Prometheus
	// scrapes it instead of them.
	fleetQuantile := func(ref, q string) *prometheus.DataqueryBuilder {
		return query(ref, `histogram_quantile(`+q+`, sum by (le, step) (rate(tokenwatch_fleet_step_duration_seconds_bucket[$__rate_interval])))`+
			` or histogram_quantile(`+q+`, sum by (step) (rate(tokenwatch_fleet_step_duration_seconds[$__rate_interval])))`,
			"{{step}} p"+q[2:])
	}
	b.WithPanel(graph("Step latency, all orgs",
		"Latency of each step's HTTP exchanges (token, introspect, probe, revoke) across every org: median and 99th percentile, from the fleet-wide histogram tokenwatch_fleet_step_duration_seconds (by step and provider, no org label; classic buckets, or the native histogram where Prometheus scrapes those). One org's steps are in its row below.", "s", 24, 8,
		fleetQuantile("A", "0.5"), fleetQuantile("B", "0.99")))
}

// orgRow explains one org, picked with the org variable.
func orgRow(b *dashboard.DashboardBuilder) {
	sel := `{org="$org"}`
	b.WithRow(dashboard.NewRowBuilder(rowOrg))
	b.WithPanel(statPanel("State",
		"The last check of this org: OK, or FAILING with its outcome in the panels below.", 4,
		instant("A", `tokenwatch_check_success`+sel, "")).
		Mappings(healthWords()).
		Thresholds(thresholds(red, step{1, green})))
	b.WithPanel(statPanel("Introspection",
		"What introspection said about the token of the last check. Inactive while the resource call works is a permission gap (introspection_not_permitted), not a dead token.", 4,
		instant("A", `tokenwatch_introspection_active`+sel, "")).
		Mappings(words("inactive", red, "active", green)).
		Thresholds(thresholds(red, step{1, green})))
	b.WithPanel(statPanel("Token expires in",
		"Time left until the token seen in the last check expires. On Salesforce it slides with use.", 4,
		instant("A", `tokenwatch_token_expiry_timestamp_seconds`+sel+` - time()`, "")).
		Unit("dtdurations").
		Thresholds(thresholds(red, step{300, orange}, step{3600, green})))
	b.WithPanel(statPanel("Token lifetime",
		"Expiry minus issue time of the token seen in the last check. A shrinking lifetime is an auth regression.", 4,
		instant("A", `tokenwatch_token_lifetime_seconds`+sel, "")).
		Unit("dtdurations").
		Thresholds(thresholds(grey)))
	b.WithPanel(statPanel("Last check",
		"When the last check of this org finished. Older than the org's schedule means checks are late.", 4,
		instant("A", `tokenwatch_check_last_run_timestamp_seconds`+sel+` * 1000`, "")).
		Unit("dateTimeFromNow").
		ColorMode(common.BigValueColorModeNone))
	b.WithPanel(statPanel("Check duration",
		"How long the last check took, all steps together.", 4,
		instant("A", `tokenwatch_check_duration_seconds`+sel, "")).
		Unit("s").
		Thresholds(thresholds(green, step{1, orange}, step{5, red})))

	b.WithPanel(statetimeline.NewPanelBuilder().Title("Check and introspection over time").
		Description("Each check's verdict and what introspection answered, over time.").
		Datasource(promDS()).Span(12).Height(6).
		WithTarget(query("A", `tokenwatch_check_success`+sel, "check")).
		WithTarget(query("B", `tokenwatch_introspection_active`+sel, "introspection")).
		Mappings(words("FAILING / inactive", red, "OK / active", green)).
		Thresholds(thresholds(red, step{1, green})).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true))
	b.WithPanel(graph("Time to expiry",
		"Time left on the token each check saw. A sawtooth is normal for fresh tokens; a line heading to zero is not.", "s", 12, 6,
		query("A", `tokenwatch_token_expiry_timestamp_seconds`+sel+` - time()`, "expires in")))

	b.WithPanel(graph("Step latency",
		"How long each step's HTTP exchanges took (token, introspect, probe, revoke), check after check: tokenwatch_step_last_duration_seconds, the last check's durations, as each scrape saw them. For percentiles of this org, turn on metrics.step_histograms (tokenwatch_step_duration_seconds, 56 series); across orgs, see the fleet row.", "s", 12, 8,
		query("A", `tokenwatch_step_last_duration_seconds`+sel, "{{step}}")))
	b.WithPanel(barGauge("Last check by step and phase",
		"Where the time of each step went in the last check. With metrics.phases on for the org, by phase: resolve, connect, tls, processing (the server thinking), transfer, leaving out phases that took no time; otherwise each step's total.", "s", 12, 8,
		instant("A", `tokenwatch_step_phase_duration_seconds`+sel+` > 0 or on (step) tokenwatch_step_last_duration_seconds`+sel, "{{step}} {{phase}}")).
		Thresholds(thresholds(blue)))

	b.WithPanel(bars("Outcomes over time",
		"This org's checks per minute, by outcome.", "opm", 12, 7,
		query("A", `sum by (outcome) (rate(tokenwatch_checks_total`+sel+`[$__rate_interval])) * 60`, "{{outcome}}")))
	b.WithPanel(tablePanel("Recent outcomes",
		"This org's checks in the dashboard's time range, by outcome, most frequent first.", 6, 7,
		rows("A", `sort_desc(sum by (outcome) (increase(tokenwatch_checks_total`+sel+`[$__range])) > 0)`)).
		WithTransformation(organize([]string{"Time"}, map[string]string{"Value": "Checks"}, []string{"outcome", "Value"})).
		OverrideByName("Checks", []dashboard.DynamicConfigValue{{Id: "decimals", Value: 0}}))
	b.WithPanel(tablePanel("Configuration",
		"How this org is checked: provider, grant and its configured labels.", 6, 7,
		rows("A", `tokenwatch_org_info`+sel)).
		WithTransformation(organize([]string{"Time", "Value", "__name__", "instance", "job"}, map[string]string{}, []string{"org", "provider", "grant"})))
}

// agentRow watches tokenwatch itself: is it keeping up, can it notify, did
// its configuration load.
func agentRow(b *dashboard.DashboardBuilder) {
	b.WithRow(dashboard.NewRowBuilder(rowAgent))
	b.WithPanel(graph("Check rate",
		"Checks finished per second, by tokenwatch instance.", "ops", 8, 7,
		query("A", `sum by (instance) (rate(tokenwatch_checks_total[$__rate_interval]))`, "{{instance}}")))
	b.WithPanel(graph("Scheduling lag",
		"How long due checks waited for a free slot under max_concurrent_checks. Growing lag means raise max_concurrent_checks, lengthen schedules or add shards.", "s", 8, 7,
		query("A", `histogram_quantile(0.5, sum by (le, instance) (rate(tokenwatch_check_queue_wait_seconds_bucket[$__rate_interval])))`, "p50 {{instance}}"),
		query("B", `histogram_quantile(0.99, sum by (le, instance) (rate(tokenwatch_check_queue_wait_seconds_bucket[$__rate_interval])))`, "p99 {{instance}}")))
	b.WithPanel(graph("Running checks",
		"Checks running at once, by instance; at max_concurrent_checks for long means checks queue.", "short", 8, 7,
		query("A", `sum by (instance) (tokenwatch_checks_running)`, "{{instance}}")).
		Decimals(0).Min(0))

	b.WithPanel(bars("Notifications",
		"Alerts sent per second, by destination (Alertmanager, webhook): accepted, failed (an attempt failed; retried unless refused) and dropped, by reason (refused, queue_full, shutdown). Failures delay alerts; drops mean alerts do not reach people.", "ops", 8, 7,
		query("A", `sum by (destination) (rate(tokenwatch_notifications_total[$__rate_interval])) - sum by (destination) (rate(tokenwatch_notifications_failed_total[$__rate_interval]))`, "{{destination}} accepted"),
		query("B", `sum by (destination) (rate(tokenwatch_notifications_failed_total[$__rate_interval]))`, "{{destination}} failed"),
		query("C", `sum by (destination, reason) (rate(tokenwatch_notifications_dropped_total[$__rate_interval]))`, "{{destination}} dropped ({{reason}})")))
	b.WithPanel(graph("Notification queue",
		"Notifications waiting to be sent, by destination. A queue that only grows means a destination is down.", "short", 8, 7,
		query("A", `sum by (destination) (tokenwatch_notification_queue_length)`, "{{destination}}")).
		Decimals(0).Min(0))
	b.WithPanel(bars("Configuration reloads",
		"Loads and reloads of the configuration (start, SIGHUP, POST /-/reload), by result. A refused reload keeps the previous configuration running.", "short", 8, 7,
		query("A", `sum by (result) (increase(tokenwatch_config_reloads_total[$__rate_interval]))`, "{{result}}")).
		Decimals(0))

	b.WithPanel(statPanel("Last reload",
		"Whether the last configuration reload of each instance succeeded. FAILED: the log and the answer to /-/reload say why.", 8,
		instant("A", `tokenwatch_config_last_reload_successful`, "{{instance}}")).
		Mappings(words("FAILED", red, "OK", green)).
		Thresholds(thresholds(red, step{1, green})))
	b.WithPanel(statPanel("Last successful reload",
		"When each instance last loaded its configuration successfully.", 8,
		instant("A", `max by (instance) (tokenwatch_config_last_reload_success_timestamp_seconds) * 1000`, "{{instance}}")).
		Unit("dateTimeFromNow").
		ColorMode(common.BigValueColorModeNone))
	b.WithPanel(tablePanel("Build",
		"Version of every tokenwatch instance.", 8, 4,
		rows("A", `tokenwatch_build_info`)).
		WithTransformation(organize([]string{"Time", "Value", "__name__", "job"}, map[string]string{}, []string{"instance", "version"})))
}

// Dashboard builds the tokenwatch dashboard.
func Dashboard() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("tokenwatch").
		Uid(UID).
		Description("OAuth 2.0 token checks by tokenwatch: which orgs fail and why, token expiry and lifetime, step latencies, and the health of tokenwatch itself.").
		Tags([]string{"tokenwatch", "oauth"}).
		Editable().
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder(datasourceVar).
			Label("Data source").
			Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder(orgVar).
			Label("Org").
			Description("The org shown in the org row.").
			Datasource(promDS()).
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(tokenwatch_org_info, org)")}).
			Definition("label_values(tokenwatch_org_info, org)").
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalCaseInsensitiveAsc))
	fleetRow(b)
	orgRow(b)
	agentRow(b)
	d, err := b.Build()
	if err != nil {
		return d, fmt.Errorf("build the dashboard: %w", err)
	}
	// Grafana needs panel ids unique within the dashboard; number them in
	// reading order so that links to a panel (viewPanel=N) stay stable.
	var id uint32
	for i := range d.Panels {
		id++
		if p := d.Panels[i].Panel; p != nil {
			p.Id = cog.ToPtr(id)
		}
		if r := d.Panels[i].RowPanel; r != nil {
			r.Id = id
		}
	}
	return d, nil
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
