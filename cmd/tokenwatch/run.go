package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/tokenwatch/tokenwatch/agent"
	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/exporters/alertmanager"
	"github.com/tokenwatch/tokenwatch/exporters/metrics"
	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/exporters/status"
	"github.com/tokenwatch/tokenwatch/exporters/webhook"
	"github.com/tokenwatch/tokenwatch/internal/store"
)

// shutdownGrace bounds how long shutdown waits for running checks.
const shutdownGrace = 30 * time.Second

// notifyGrace bounds how long shutdown keeps delivering queued alerts.
const notifyGrace = 5 * time.Second

type daemonOptions struct {
	logger        *slog.Logger
	web           *web.FlagConfig
	load          func() (*configs.Config, error)
	shard, shards int
	// extra actors (the demo's simulated orgs) run in the same group.
	extra []actor
	// started is called once the agent runs its first configuration.
	started func()
	// storage is the state store's directory.
	storage string
	// externalURL is --web.external-url: alerts link back to it.
	externalURL string
}

type actor struct {
	execute   func() error
	interrupt func(error)
}

// fileLoader loads the configuration file, with the environment's overrides and secrets.
func fileLoader(path string) func() (*configs.Config, error) {
	return func() (*configs.Config, error) { return configs.Load(path, os.Environ()) }
}

// runDaemon is `tokenwatch run`: every long-lived part is an actor of one run group.
func runDaemon(o daemonOptions) int {
	logger := o.logger
	logger.Info("starting tokenwatch", "version", version.Info(), "build_context", version.BuildContext())
	st, err := store.Open(o.storage, logger)
	if err != nil {
		logger.Error("cannot open the state store", "err", err)
		return exitUnhealthy
	}
	defer st.Close()
	logger.Info("state store opened", "path", st.Path())

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector("tokenwatch"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// The agent is the one owner of the orgs and their last results: the
	// collector and the page read them from it at every scrape and request.
	// ag is set below, before serving starts.
	var ag *agent.Agent
	states := func() []checks.OrgState { return ag.States() }
	collector := metrics.NewCollector(metrics.SourceFunc(states))
	// The per-org series are written by the collector's own /metrics
	// handler (below); the registry holds the rest.
	reg.MustRegister(collector.Fleet())
	reloadOK := promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "tokenwatch_config_last_reload_successful",
		Help: "Whether the last configuration reload attempt was successful.",
	})
	reloadTime := promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "tokenwatch_config_last_reload_success_timestamp_seconds",
		Help: "Timestamp of the last successful configuration reload.",
	})
	reloads := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "tokenwatch_config_reloads_total",
		Help: "Configuration loads and reloads by result (success or failure).",
	}, []string{"result"})
	reloads.WithLabelValues("success")
	reloads.WithLabelValues("failure")
	// The page asks the agent for the orgs and the firing alerts on every request.
	page := status.NewPage(status.PageOptions{Title: "tokenwatch", Version: version.Version,
		Source: status.SourceFunc(states),
		Firing: func() map[string][]string {
			firing := map[string][]string{}
			for _, a := range ag.Alerts() {
				if a.State == agent.AlertFiring {
					firing[a.Org] = append(firing[a.Org], a.Alertname)
				}
			}
			return firing
		}})
	router := notify.NewRouter(notify.RouterOptions{Registerer: reg, Logger: logger})

	ag = agent.New(agent.Options{
		Logger:      logger,
		Observers:   []agent.Observer{collector},
		Shard:       o.shard,
		Shards:      o.shards,
		RunOnStart:  true,
		Instruments: metrics.NewAgentMetrics(reg),
		Alerts:      router,
		Store:       st,
		ExternalURL: o.externalURL,
	})
	reg.MustRegister(metrics.NewAlertCollector(func() []metrics.FiringAlert {
		var out []metrics.FiringAlert
		for _, a := range ag.Alerts() {
			if a.State == agent.AlertFiring {
				out = append(out, metrics.FiringAlert{Org: a.Org, Alertname: a.Alertname})
			}
		}
		return out
	}))

	// probeTimeout is global.probe.timeout of the running configuration.
	probeTimeout := &durationValue{}
	// orgFiles watches the files of org_files and asks for a reload when
	// they change. Without it, SIGHUP and /-/reload still reload them.
	orgFiles, err := newOrgFileWatcher(logger, orgFilesQuiet, orgFilesMaxWait)
	if err != nil {
		logger.Warn("cannot watch org_files; reload with SIGHUP or POST /-/reload after changing them", "err", err)
	} else {
		defer orgFiles.Close()
	}
	// orgFilesChanged is nil, and never ready, without a watcher.
	var orgFilesChanged <-chan struct{}
	if orgFiles != nil {
		orgFilesChanged = orgFiles.Changed()
	}
	// lastLoad is what the last load read, for the reload's log line.
	var lastLoad struct {
		took time.Duration
		orgs int
	}
	// reload is the one path for the first load, SIGHUP, POST /-/reload
	// and changes to org_files.
	first := true
	reload := func() (err error) {
		defer func() {
			if err == nil {
				reloadOK.Set(1)
				reloadTime.SetToCurrentTime()
				reloads.WithLabelValues("success").Inc()
			} else {
				reloadOK.Set(0)
				reloads.WithLabelValues("failure").Inc()
			}
		}()
		loadStart := time.Now()
		cfg, err := o.load()
		if err != nil {
			return err
		}
		lastLoad.took, lastLoad.orgs = time.Since(loadStart), len(cfg.Orgs)
		// Built before anything changes, so a destination that cannot be
		// built refuses the whole configuration.
		dests, err := alertDestinations(cfg.Alerting, o.externalURL)
		if err != nil {
			return err
		}
		if first {
			// The first load restores alert state from the store and sends
			// what was pending: the destinations must be there to take it.
			router.Update(dests)
		}
		if err := ag.Apply(cfg); err != nil {
			return err
		}
		if orgFiles != nil {
			// A refused configuration leaves the running one's files
			// watched, which include the file to fix.
			orgFiles.Watch(cfg.OrgFiles, loadStart)
		}
		probeTimeout.set(cfg.Global.Probe.Timeout)
		for _, w := range cfg.Warnings() {
			logger.Warn("configuration warning", "warning", w)
		}
		if first {
			first = false
			return nil
		}
		// Destinations that stay keep their queues; new ones hear of the
		// alerts already firing.
		ag.AlertDestinationsAdded(router.Update(dests))
		return nil
	}
	// ready is set once the first configuration is applied. The web server
	// starts before that, so that /metrics and /-/healthy answer within a
	// second of launch whatever the number of orgs.
	var ready atomic.Bool

	reloadCh := make(chan chan error)
	mux := http.NewServeMux()
	mux.Handle("/metrics", collector.Handler(reg, reg, logger))
	probe := metrics.ProbeHandler(prober{ag}, probeTimeout.get, logger)
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			// Not "unknown org": the orgs are not configured yet.
			http.Error(w, "tokenwatch is starting: the configuration is not applied yet.", http.StatusServiceUnavailable)
			return
		}
		probe.ServeHTTP(w, r)
	})
	mux.Handle("/api/v1/orgs", page.API())
	mux.Handle("/", page.HTML())
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "tokenwatch is healthy.")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "tokenwatch is not ready.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "tokenwatch is ready.")
	})
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "use POST to reload the configuration", http.StatusMethodNotAllowed)
			return
		}
		errc := make(chan error)
		select {
		case reloadCh <- errc:
		case <-r.Context().Done():
			return
		}
		if err := <-errc; err != nil {
			http.Error(w, "configuration refused, the previous one keeps running:\n"+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "configuration reloaded.")
	})

	var g run.Group
	{
		term := make(chan os.Signal, 1)
		signal.Notify(term, os.Interrupt, syscall.SIGTERM)
		cancel := make(chan struct{})
		g.Add(func() error {
			select {
			case s := <-term:
				logger.Info("received signal, shutting down", "signal", s.String())
			case <-cancel:
			}
			return nil
		}, func(error) { close(cancel) })
	}
	{
		// The first load happens here, with the web server already
		// listening; a bad configuration at start ends the daemon. Reloads
		// (SIGHUP, /-/reload) wait for it.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		cancel := make(chan struct{})
		g.Add(func() error {
			if err := reload(); err != nil {
				if errors.Is(err, agent.ErrStopped) {
					// Interrupted while starting (a signal, the web server failed).
					return nil
				}
				logConfigError(logger, "cannot load the configuration", err)
				return errStartConfig
			}
			ready.Store(true)
			if o.started != nil {
				o.started()
			}
			// reloadBy reloads and logs the outcome with what triggered it
			// and how long reading and applying the configuration took.
			reloadBy := func(trigger string) error {
				start := time.Now()
				err := reload()
				if err != nil {
					logConfigError(logger, "configuration refused, the previous one keeps running", err)
					return err
				}
				logger.Info("configuration reloaded", "trigger", trigger, "load_duration", lastLoad.took.Round(time.Millisecond),
					"duration", time.Since(start).Round(time.Millisecond), "orgs", lastLoad.orgs)
				return nil
			}
			for {
				select {
				case <-hup:
					_ = reloadBy("SIGHUP")
				case errc := <-reloadCh:
					errc <- reloadBy("/-/reload")
				case <-orgFilesChanged:
					_ = reloadBy("org_files")
				case <-cancel:
					return nil
				}
			}
		}, func(error) { close(cancel) })
	}
	{
		cancel := make(chan struct{})
		g.Add(func() error {
			// The dispatcher runs the orgs as the first load adds them.
			ag.Start()
			<-cancel
			return nil
		}, func(error) {
			close(cancel)
			ctx, stop := context.WithTimeout(context.Background(), shutdownGrace)
			defer stop()
			ag.Stop(ctx)
			// The last checks may have resolved alerts: deliver what is queued.
			nctx, nstop := context.WithTimeout(context.Background(), notifyGrace)
			defer nstop()
			router.Stop(nctx)
			// The acceptances of those last notifications go to the store too.
			ag.FlushState()
		})
	}
	{
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		g.Add(func() error {
			if err := web.ListenAndServe(srv, o.web, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("web server: %w", err)
			}
			return nil
		}, func(error) {
			ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
			defer stop()
			_ = srv.Shutdown(ctx)
		})
	}
	if orgFiles != nil {
		stop := make(chan struct{})
		g.Add(func() error {
			orgFiles.Run(stop)
			return nil
		}, func(error) { close(stop) })
	}
	for _, a := range o.extra {
		g.Add(a.execute, a.interrupt)
	}
	if err := g.Run(); err != nil {
		if !errors.Is(err, errStartConfig) {
			logger.Error("tokenwatch stopped", "err", err)
		}
		return exitUnhealthy
	}
	logger.Info("tokenwatch stopped")
	return exitOK
}

// errStartConfig ends the daemon when its first configuration is refused
// (the problems are logged).
var errStartConfig = errors.New("configuration refused at start")

// logConfigError logs every configuration problem on its own line.
func logConfigError(logger *slog.Logger, msg string, err error) {
	var problems configs.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			// A problem in an org file has a path "FILE: [i].field".
			if file, field, ok := strings.Cut(p.Path, ": "); ok {
				logger.Error(msg, "file", file, "field", field, "problem", p.Message)
				continue
			}
			logger.Error(msg, "field", p.Path, "problem", p.Message)
		}
		return
	}
	logger.Error(msg, "err", err)
}

// alertDestinations builds a notifier for every Alertmanager and webhook of
// the alerting section. Each is named from its URL (see
// notify.DestinationName: kind, host and a hash, no credentials, no path),
// so that its name, and with it its queue and metric series, survives a
// reload that adds or removes other destinations. externalURL
// (--web.external-url) is the webhook payloads' externalURL.
func alertDestinations(a configs.Alerting, externalURL string) ([]notify.Destination, error) {
	userAgent := "tokenwatch/" + version.Version
	var dests []notify.Destination
	taken := map[string]int{}
	name := func(kind, u string) string {
		// Configuration refuses the same URL twice, so a suffix is only
		// for two URLs whose hashes share their first 8 hex digits.
		n := notify.DestinationName(kind, u)
		taken[n]++
		if c := taken[n]; c > 1 {
			n = fmt.Sprintf("%s#%d", n, c)
		}
		return n
	}
	for i, am := range a.Alertmanagers {
		n, err := alertmanager.New(alertmanager.Options{
			URL:        am.URL,
			HTTPClient: am.HTTPClient,
			Timeout:    am.Timeout,
			UserAgent:  userAgent,
		})
		if err != nil {
			return nil, fmt.Errorf("alerting.alertmanagers[%d]: %w", i, err)
		}
		dests = append(dests, notify.Destination{Name: name("alertmanager", am.URL), Notifier: n, Resends: true})
	}
	for i, wh := range a.Webhooks {
		n, err := webhook.New(webhook.Options{
			URL:          wh.URL,
			Secret:       wh.Secret.Reveal(),
			SendResolved: wh.SendResolved,
			ExternalURL:  externalURL,
			HTTPClient:   wh.HTTPClient,
			Timeout:      wh.Timeout,
			UserAgent:    userAgent,
		})
		if err != nil {
			return nil, fmt.Errorf("alerting.webhooks[%d]: %w", i, err)
		}
		dests = append(dests, notify.Destination{Name: name("webhook", wh.URL), Notifier: n})
	}
	return dests, nil
}

// durationValue is a duration read by the web handlers and set by reloads.
type durationValue struct{ ns atomic.Int64 }

func (d *durationValue) set(v time.Duration) { d.ns.Store(int64(v)) }
func (d *durationValue) get() time.Duration  { return time.Duration(d.ns.Load()) }

// prober serves /probe from the agent, turning the agent's errors into
// those the handler answers (404, 503): neither package imports the other.
type prober struct{ ag *agent.Agent }

func (p prober) ProbeOrg(ctx context.Context, name string, o metrics.ProbeOptions) (checks.Info, *checks.Result, error) {
	info, res, err := p.ag.ProbeOrg(ctx, name, agent.ProbeOptions{MaxAge: o.MaxAge, Force: o.Force})
	for _, e := range []struct{ from, to error }{
		{agent.ErrUnknownOrg, metrics.ErrUnknownOrg},
		{agent.ErrNoLogin, metrics.ErrNoLogin},
		{agent.ErrStillRunning, metrics.ErrStillRunning},
	} {
		if errors.Is(err, e.from) {
			// Same words on both sides: keep them once, with the cause.
			return info, res, fmt.Errorf("%w%s", e.to, strings.TrimPrefix(err.Error(), e.from.Error()))
		}
	}
	return info, res, err
}
