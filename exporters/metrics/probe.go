package metrics

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenwatch/tokenwatch/checks"
)

// ErrUnknownOrg is returned, wrapped, by a Prober asked for an org that is not
// configured. ProbeHandler answers it with 404.
var ErrUnknownOrg = errors.New("unknown org")

// ErrNoLogin is returned, wrapped, by a Prober that may not log in now (the
// org backs off after a rejected login, or its login budget is spent) and has
// no earlier result to answer; ProbeHandler answers it with 503. With an
// earlier result, the Prober returns that result and this error.
var ErrNoLogin = errors.New("no login allowed now")

// ErrStillRunning is returned, wrapped, when ctx ended before the probe's
// check finished; the check goes on and is published like a scheduled one.
// With an earlier result, the Prober returns that result and this error.
var ErrStillRunning = errors.New("check still running")

// ProbeOptions say how fresh a /probe answer must be.
type ProbeOptions struct {
	// MaxAge: an earlier result younger than this is answered without a new
	// check. Negative means the Prober's configured default.
	MaxAge time.Duration
	// Force runs a new check even while the org backs off (within the login
	// budget), and resets the backoff.
	Force bool
}

// Prober runs one check of a configured org now, or answers a fresh one.
type Prober interface {
	// ProbeOrg returns the org's identity and a result per opts. It returns
	// an error wrapping ErrUnknownOrg when no org has that name.
	ProbeOrg(ctx context.Context, name string, opts ProbeOptions) (checks.Info, *checks.Result, error)
}

// scrapeTimeoutMargin is left of Prometheus' scrape timeout for writing the
// answer, so that a slow check still reports probe_success 0 instead of the
// scrape failing as a whole.
const scrapeTimeoutMargin = 500 * time.Millisecond

// ProbeHandler serves /probe?org=NAME: it runs one check of the org now and
// answers, in the Prometheus exposition format, the per-org metrics of that
// one result and tokenwatch_probe_success. A failing check is still a 200
// answer, with tokenwatch_probe_success 0, as with the blackbox exporter.
//
// Query parameters: max_age (a Go duration: an earlier result younger than
// this is answered without logging in) and force=1 (log in even while the org
// backs off). Without Prometheus' X-Prometheus-Scrape-Timeout-Seconds header
// the answer comes within defaultTimeout(), read at each request so that a
// reload can change it.
func ProbeHandler(p Prober, defaultTimeout func() time.Duration, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("org")
		if name == "" {
			http.Error(w, "the org parameter is missing: ask for /probe?org=NAME with NAME a configured org", http.StatusBadRequest)
			return
		}
		opts, err := probeOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := probeContext(r, defaultTimeout())
		defer cancel()

		info, result, err := p.ProbeOrg(ctx, name, opts)
		switch {
		case errors.Is(err, ErrUnknownOrg):
			http.Error(w, fmt.Sprintf("unknown org \"%s\": it is not in the configuration", textSafe(name)), http.StatusNotFound)
			return
		case result == nil && (errors.Is(err, ErrNoLogin) || errors.Is(err, ErrStillRunning)):
			w.Header().Set("Retry-After", "10")
			http.Error(w, fmt.Sprintf("org \"%s\": %s, and there is no earlier result to answer", textSafe(name), textSafe(err.Error())),
				http.StatusServiceUnavailable)
			return
		case err != nil && !errors.Is(err, ErrNoLogin) && !errors.Is(err, ErrStillRunning):
			logger.Error("probe failed", "org", name, "err", err)
			http.Error(w, fmt.Sprintf("probe of org \"%s\" failed: %s", textSafe(name), textSafe(err.Error())), http.StatusInternalServerError)
			return
		case result == nil:
			logger.Error("probe returned no result", "org", name)
			http.Error(w, fmt.Sprintf("probe of org \"%s\" returned no result", textSafe(name)), http.StatusInternalServerError)
			return
		}

		reg := prometheus.NewRegistry()
		// A one-off collector of this one result: its gauges, and its
		// counts unless it was read back from the store.
		c := NewCollector(SourceFunc(func() []checks.OrgState { return []checks.OrgState{{Info: info, Last: result}} }))
		// One org's answer: no fleet-wide series. The org's opt-in series
		// follow its settings, as on /metrics.
		c.fleet = nil
		reg.MustRegister(c)
		c.Observe(info, result)
		// A check that outran the deadline is a failed probe, whatever the
		// earlier result said.
		promauto.With(reg).NewGauge(prometheus.GaugeOpts{
			Name: "tokenwatch_probe_success",
			Help: "Whether the result this probe answered was healthy (1) or not (0); 0 when its check outran the deadline.",
		}).Set(boolValue(result.Success() && !errors.Is(err, ErrStillRunning)))
		promauto.With(reg).NewGauge(prometheus.GaugeOpts{
			Name: "tokenwatch_probe_result_age_seconds",
			Help: "Age of the answered result: near 0 for a check run for this probe, more for an earlier result answered because it was fresh enough or no login was allowed.",
		}).Set(max(time.Since(result.Start.Add(result.Duration)).Seconds(), 0))

		promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: promErrorLog{logger},
		}).ServeHTTP(w, r)
	})
}

// probeOptions reads max_age and force.
func probeOptions(r *http.Request) (ProbeOptions, error) {
	q := r.URL.Query()
	opts := ProbeOptions{MaxAge: -1}
	if v := q.Get("max_age"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return opts, fmt.Errorf("max_age %q is not a duration such as 30s or 0s", textSafe(v))
		}
		opts.MaxAge = d
	}
	switch v := q.Get("force"); v {
	case "", "0", "false":
	case "1", "true":
		opts.Force = true
	default:
		return opts, fmt.Errorf("force %q must be 1 or 0", textSafe(v))
	}
	return opts, nil
}

// probeContext bounds the answer by the scrape timeout Prometheus announces,
// so it comes before Prometheus gives up, else by defaultTimeout.
func probeContext(r *http.Request, defaultTimeout time.Duration) (context.Context, context.CancelFunc) {
	secs, err := strconv.ParseFloat(r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"), 64)
	if err != nil || secs <= 0 {
		if defaultTimeout <= 0 {
			defaultTimeout = 10 * time.Second
		}
		return context.WithTimeout(r.Context(), defaultTimeout)
	}
	timeout := time.Duration(secs * float64(time.Second))
	if timeout > 2*scrapeTimeoutMargin {
		timeout -= scrapeTimeoutMargin
	}
	return context.WithTimeout(r.Context(), timeout)
}

// textSafe makes a request-supplied string harmless in an error body: HTML
// special characters escaped in case a browser renders it anyway, control
// characters replaced so it cannot forge lines.
func textSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '\uFFFD'
		}
		return r
	}, s)
	return html.EscapeString(s)
}

// promErrorLog lets promhttp report encoding errors through slog.
type promErrorLog struct{ logger *slog.Logger }

func (l promErrorLog) Println(v ...any) {
	l.logger.Error("serving probe metrics failed", "err", fmt.Sprint(v...))
}
