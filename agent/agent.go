// Package agent runs the checks: one scheduled job per org on robfig/cron,
// bounded concurrency, each org's runs spread over its interval, the last
// result per org, the alert state machine, and reloads that keep the state
// of unchanged orgs and the alerts of every org still configured.
package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	promexp "github.com/tokenwatch/tokenwatch/exporters/prometheus"
)

// Observer receives the agent's state: exporters implement it.
type Observer interface {
	// SetOrgs gives the full set of orgs after a (re)load.
	SetOrgs(infos []checks.Info)
	// Observe gives a finished check.
	Observe(info checks.Info, r *checks.Result)
}

// ErrUnknownOrg is returned, wrapped, for an org name that is not configured
// (or not in this shard). It is the sentinel the /probe handler answers 404 to.
var ErrUnknownOrg = promexp.ErrUnknownOrg

// Options configure an Agent.
type Options struct {
	Logger    *slog.Logger
	Observers []Observer
	// Shard and Shards select the orgs whose name hashes to this replica (Shards 0 or 1: all).
	Shard, Shards int
	// NewChecker builds an org's checker; tests replace it.
	NewChecker func(checks.Target, ...checks.Option) *checks.Checker
	// RunOnStart runs each new org's check once right after it is added.
	RunOnStart bool
	// Instruments, when set, is told when checks start and finish.
	Instruments Instruments
	// Alerts receives the alert notifications; nil evaluates alerts
	// (Alerts shows them) but sends nothing, so none ever fires.
	Alerts AlertSender
	// Clock tells the time of alerts; time.Now when nil.
	Clock func() time.Time
}

// Instruments receive the agent's own health signals.
type Instruments interface {
	// CheckStarted is called when a check got its concurrency slot after waiting.
	CheckStarted(waited time.Duration)
	// CheckFinished is called when it gave the slot back.
	CheckFinished()
}

// Agent schedules and runs the checks of every configured org.
type Agent struct {
	logger *slog.Logger
	opts   Options
	cron   *cron.Cron

	mu   sync.Mutex
	orgs map[string]*orgJob
	// sem bounds concurrent checks; replaced when max_concurrent_checks changes.
	sem     chan struct{}
	stopped chan struct{}
	once    sync.Once
	// immediate counts the first runs of added orgs, which cron does not track.
	immediate sync.WaitGroup

	alerts *alerter
}

// orgJob is one org's schedule entry, checker and last result.
type orgJob struct {
	agent   *Agent
	org     configs.Org
	info    checks.Info
	checker *checks.Checker
	entry   cron.EntryID
	timeout time.Duration
	// tls fingerprints the contents of the org's TLS files, so a renewed
	// certificate at the same path counts as a change on reload.
	tls string

	mu   sync.Mutex
	last *checks.Result
}

// New makes an agent; call Apply to give it orgs and Start to run them.
func New(opts Options) *Agent {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.NewChecker == nil {
		opts.NewChecker = checks.NewChecker
	}
	l := cronLogger{opts.Logger}
	a := &Agent{
		logger:  opts.Logger,
		opts:    opts,
		orgs:    map[string]*orgJob{},
		sem:     make(chan struct{}, 1),
		stopped: make(chan struct{}),
		alerts:  newAlerter(opts.Logger, opts.Alerts, opts.Clock),
	}
	a.cron = cron.New(
		cron.WithLocation(time.UTC),
		cron.WithLogger(l),
		// The default chain recovers nothing; a check must never take the daemon down.
		cron.WithChain(cron.Recover(l), cron.SkipIfStillRunning(l)),
	)
	return a
}

// Start starts the scheduler and the re-sending of firing alerts.
func (a *Agent) Start() {
	a.cron.Start()
	go a.resendLoop()
}

// resendLoop re-sends firing alerts whose resend_interval has passed; a
// second is fine enough for intervals of at least a second.
func (a *Agent) resendLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-a.stopped:
			return
		case <-t.C:
			a.alerts.tick()
		}
	}
}

// Stop stops scheduling, waits for running checks (bounded by ctx), then
// revokes kept tokens. Firing alerts are not resolved: Alertmanager keeps
// them until their endsAt, four times the longer of resend_interval and the
// org's check interval after the last send. A restarted tokenwatch starts
// with no alert state and fires them again after failure_threshold bad
// checks; if the down time plus those checks outlast endsAt (a large
// failure_threshold, a long outage), receivers see a resolve, then a new
// firing. An org that recovered meanwhile is resolved only by endsAt.
func (a *Agent) Stop(ctx context.Context) {
	a.once.Do(func() { close(a.stopped) })
	cronDone := a.cron.Stop()
	done := make(chan struct{})
	go func() {
		<-cronDone.Done()
		a.immediate.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		a.logger.Warn("shutdown did not wait for running checks", "err", ctx.Err())
	}
	a.mu.Lock()
	jobs := make([]*orgJob, 0, len(a.orgs))
	for _, j := range a.orgs {
		jobs = append(jobs, j)
	}
	a.mu.Unlock()
	// Revoke kept tokens with a fresh, short deadline (the grace period may be
	// spent) and no more at once than checks may run.
	revokeCtx, cancel := context.WithTimeout(context.Background(), revokeGrace)
	defer cancel()
	a.mu.Lock()
	slots := make(chan struct{}, cap(a.sem))
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			j.checker.Close(revokeCtx)
		})
	}
	wg.Wait()
}

// revokeGrace bounds revoking the kept tokens at shutdown.
const revokeGrace = 10 * time.Second

// inShard reports whether this replica owns the org.
func (a *Agent) inShard(name string) bool {
	if a.opts.Shards <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32()%uint32(a.opts.Shards)) == a.opts.Shard
}

// Apply makes cfg the running configuration: added orgs start, removed orgs
// stop (their series vanish), unchanged orgs keep their state. An error
// leaves the running configuration untouched.
func (a *Agent) Apply(cfg *configs.Config) error {
	type planned struct {
		org    configs.Org
		target checks.Target
		sched  cron.Schedule
		tls    string
	}
	var plan []planned
	var errs []error
	for _, o := range cfg.Orgs {
		if !a.inShard(o.Name) {
			continue
		}
		t, err := Target(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := spreadSchedule(o.Schedule, o.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("org %s: %w", o.Name, err))
			continue
		}
		plan = append(plan, planned{org: o, target: t, sched: s, tls: tlsFingerprint(o.TLS)})
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	a.mu.Lock()
	if n := max(cfg.Global.MaxConcurrentChecks, 1); cap(a.sem) != n {
		// Running checks release into the old channel; new ones use the new bound.
		a.sem = make(chan struct{}, n)
	}
	keep := map[string]bool{}
	var added []*orgJob
	orgs := make([]configs.Org, 0, len(plan))
	infos := make(map[string]checks.Info, len(plan))
	for _, p := range plan {
		orgs = append(orgs, p.org)
		infos[p.org.Name] = p.target.Info()
	}
	for _, p := range plan {
		keep[p.org.Name] = true
		var opts []checks.Option
		if old, ok := a.orgs[p.org.Name]; ok {
			if sameOrg(old.org, p.org) && old.tls == p.tls {
				continue
			}
			if sameRefreshChain(old.org, p.org) {
				// Rotation retired the configured refresh token; carry the live one over.
				opts = append(opts, checks.WithRefreshToken(old.checker.RefreshToken()))
			}
			a.removeLocked(old)
		}
		j := &orgJob{agent: a, org: p.org, info: p.target.Info(), checker: a.opts.NewChecker(p.target, opts...),
			timeout: checkDeadline(p.target), tls: p.tls}
		j.entry = a.cron.Schedule(p.sched, j)
		a.orgs[p.org.Name] = j
		added = append(added, j)
	}
	for name, j := range a.orgs {
		if !keep[name] {
			a.removeLocked(j)
		}
	}
	current := a.infosLocked()
	a.alerts.configure(cfg.Alerting)
	a.alerts.setOrgs(orgs, infos)
	a.mu.Unlock()

	for _, o := range a.opts.Observers {
		o.SetOrgs(current)
	}
	a.logger.Info("configuration applied", "orgs", len(current), "added_or_changed", len(added))
	stopping := false
	select {
	case <-a.stopped:
		stopping = true
	default:
	}
	if a.opts.RunOnStart && !stopping {
		for _, j := range added {
			if e := a.cron.Entry(j.entry); e.Valid() {
				a.immediate.Go(e.WrappedJob.Run)
			}
		}
	}
	return nil
}

func (a *Agent) removeLocked(j *orgJob) {
	a.cron.Remove(j.entry)
	delete(a.orgs, j.org.Name)
	// Revoke a kept token without holding up the reload.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
		defer cancel()
		j.checker.Close(ctx)
	}()
}

func (a *Agent) infosLocked() []checks.Info {
	infos := make([]checks.Info, 0, len(a.orgs))
	for _, j := range a.orgs {
		infos = append(infos, j.info)
	}
	slices.SortFunc(infos, func(x, y checks.Info) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return infos
}

// checkDeadline bounds a whole check: discovery plus four requests.
func checkDeadline(t checks.Target) time.Duration {
	to := t.Timeout
	if to <= 0 {
		to = checks.DefaultTimeout
	}
	return 5*to + time.Second
}

// Run is the scheduled job of one org.
func (j *orgJob) Run() {
	// Graceful stop lets running checks finish; their deadline bounds the wait.
	if _, err := j.run(context.Background()); err != nil {
		j.agent.logger.Debug("check not run", "org", j.org.Name, "err", err)
	}
}

// run waits for a concurrency slot, runs the check and publishes its result.
func (j *orgJob) run(ctx context.Context) (*checks.Result, error) {
	a := j.agent
	a.mu.Lock()
	sem := a.sem
	a.mu.Unlock()
	queued := time.Now()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-a.stopped:
		return nil, context.Canceled
	}
	defer func() { <-sem }()
	if in := a.opts.Instruments; in != nil {
		in.CheckStarted(time.Since(queued))
		defer in.CheckFinished()
	}

	checkCtx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	res := j.checker.Check(checkCtx)
	if err := ctx.Err(); err != nil {
		// The caller (a /probe client) went away or its deadline (the scrape
		// timeout) passed before the org's own: the result says nothing about
		// the org, so neither observers nor alerts hear of it. The result goes
		// back to the caller all the same (a /probe answers it as a failure).
		return res, err
	}
	j.publish(res)
	return res, nil
}

// publish stores the result and tells the observers, unless the org was
// removed or replaced while the check ran.
func (j *orgJob) publish(res *checks.Result) {
	a := j.agent
	a.mu.Lock()
	current := a.orgs[j.org.Name] == j
	a.mu.Unlock()
	if !current {
		return
	}
	j.mu.Lock()
	prev := j.last
	j.last = res
	j.mu.Unlock()
	logger := a.logger.With("org", j.org.Name)
	switch {
	case prev == nil || prev.Outcome != res.Outcome:
		level := slog.LevelInfo
		if !res.Success() {
			level = slog.LevelWarn
		}
		logger.Log(context.Background(), level, "org outcome changed", "outcome", res.Outcome,
			"previous", previousOutcome(prev), "duration", res.Duration.Round(time.Millisecond))
	default:
		logger.Debug("check finished", "outcome", res.Outcome, "duration", res.Duration.Round(time.Millisecond))
	}
	for _, o := range a.opts.Observers {
		o.Observe(j.info, res)
	}
	a.alerts.observe(j.org.Name, res)
}

func previousOutcome(r *checks.Result) string {
	if r == nil {
		return "none"
	}
	return string(r.Outcome)
}

// ProbeOrg runs the org's check now (for /probe) and publishes it like a scheduled one,
// unless ctx ends first: then it returns ctx's error and publishes nothing.
func (a *Agent) ProbeOrg(ctx context.Context, name string) (checks.Info, *checks.Result, error) {
	a.mu.Lock()
	j, ok := a.orgs[name]
	a.mu.Unlock()
	if !ok {
		return checks.Info{}, nil, fmt.Errorf("%w %q", ErrUnknownOrg, name)
	}
	res, err := j.run(ctx)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && res != nil:
		// The scrape timeout passed: answer what the check saw, unpublished.
		return j.info, res, nil
	case err != nil:
		return j.info, nil, err
	}
	return j.info, res, nil
}

// Last returns the last result of every org (nil for orgs not yet checked), by name.
func (a *Agent) Last() map[string]*checks.Result {
	a.mu.Lock()
	jobs := make([]*orgJob, 0, len(a.orgs))
	for _, j := range a.orgs {
		jobs = append(jobs, j)
	}
	a.mu.Unlock()
	out := make(map[string]*checks.Result, len(jobs))
	for _, j := range jobs {
		j.mu.Lock()
		out[j.org.Name] = j.last
		j.mu.Unlock()
	}
	return out
}

// cronLogger adapts slog to cron's logger; cron's info messages are debug noise here.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}

// Alerts lists the alerts that are pending, being sent or firing, by org
// and alertname.
func (a *Agent) Alerts() []AlertStatus { return a.alerts.statuses() }

// AlertDestinationsAdded sends the alerts firing now to destinations just
// added by a reload, which would otherwise hear of them only at their next
// change (a webhook) or re-send (an Alertmanager).
func (a *Agent) AlertDestinationsAdded(names []string) { a.alerts.sendFiringTo(names) }
