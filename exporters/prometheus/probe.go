package prometheus

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

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenwatch/tokenwatch/checks"
)

// ErrUnknownOrg is returned, wrapped, by a Prober asked for an org that is not
// configured. ProbeHandler answers it with 404.
var ErrUnknownOrg = errors.New("unknown org")

// Prober runs one check of a configured org now.
type Prober interface {
	// ProbeOrg checks the named org and returns its identity and the result.
	// It returns an error wrapping ErrUnknownOrg when no org has that name.
	ProbeOrg(ctx context.Context, name string) (checks.Info, *checks.Result, error)
}

// scrapeTimeoutMargin is left of Prometheus' scrape timeout for writing the
// answer, so that a slow check still reports probe_success 0 instead of the
// scrape failing as a whole.
const scrapeTimeoutMargin = 500 * time.Millisecond

// ProbeHandler serves /probe?org=NAME: it runs one check of the org now and
// answers, in the Prometheus exposition format, the per-org metrics of that
// one result and tokenwatch_probe_success. A failing check is still a 200
// answer, with tokenwatch_probe_success 0, as with the blackbox exporter.
func ProbeHandler(p Prober, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("org")
		if name == "" {
			http.Error(w, "the org parameter is missing: ask for /probe?org=NAME with NAME a configured org", http.StatusBadRequest)
			return
		}
		ctx, cancel := probeContext(r)
		defer cancel()

		info, result, err := p.ProbeOrg(ctx, name)
		switch {
		case errors.Is(err, ErrUnknownOrg):
			http.Error(w, fmt.Sprintf("unknown org \"%s\": it is not in the configuration", textSafe(name)), http.StatusNotFound)
			return
		case err != nil:
			logger.Error("probe failed", "org", name, "err", err)
			http.Error(w, fmt.Sprintf("probe of org \"%s\" failed: %s", textSafe(name), textSafe(err.Error())), http.StatusInternalServerError)
			return
		case result == nil:
			logger.Error("probe returned no result", "org", name)
			http.Error(w, fmt.Sprintf("probe of org \"%s\" returned no result", textSafe(name)), http.StatusInternalServerError)
			return
		}

		reg := prom.NewRegistry()
		c := NewCollector()
		reg.MustRegister(c)
		c.SetOrgs([]checks.Info{info})
		c.Observe(info, result)
		promauto.With(reg).NewGauge(prom.GaugeOpts{
			Name: "tokenwatch_probe_success",
			Help: "Whether the check run for this probe was healthy (1) or not (0).",
		}).Set(boolValue(result.Success()))

		promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: promErrorLog{logger},
		}).ServeHTTP(w, r)
	})
}

// probeContext bounds the check by the scrape timeout Prometheus announces,
// when it does, so the check gives up before Prometheus does.
func probeContext(r *http.Request) (context.Context, context.CancelFunc) {
	secs, err := strconv.ParseFloat(r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"), 64)
	if err != nil || secs <= 0 {
		return context.WithCancel(r.Context())
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
