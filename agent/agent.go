// Package agent runs the checks: each org's runs spread over its interval
// (robfig/cron schedules) and dispatched from one timetable, bounded
// concurrency, the last result per org, the alert state machine, and reloads
// that keep the state of unchanged orgs and the alerts of every org still
// configured.
package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/store"
)

// Observer is told of every finished check, for what accumulates (counts,
// latency histograms). What is current, the configured orgs and their last
// results, the agent keeps once: exporters read it from States.
type Observer interface {
	// Observe gives a finished check of an org still configured; results
	// loaded from the store are not checks and are not given.
	Observe(info checks.Info, r *checks.Result)
}

// Errors of ProbeOrg, returned wrapped.
var (
	// ErrUnknownOrg: no org of that name is configured (or in this shard).
	ErrUnknownOrg = errors.New("unknown org")
	// ErrNoLogin: the org may not log in now (it backs off after a rejected
	// login, or its identity's login budget is spent).
	ErrNoLogin = errors.New("no login allowed now")
	// ErrStillRunning: the caller's context ended before the check did; the
	// check goes on and is published like a scheduled one.
	ErrStillRunning = errors.New("check still running")
)

// ProbeOptions say how fresh an answer of ProbeOrg must be.
type ProbeOptions struct {
	// MaxAge: a last result younger than this is answered without a new
	// check. Negative means global.probe.max_age.
	MaxAge time.Duration
	// Force overrides the backoff for one login (see check).
	Force bool
}

// Options configure an Agent.
type Options struct {
	Logger    *slog.Logger
	Observers []Observer
	// Shard and Shards select the orgs whose name hashes to this replica (Shards 0 or 1: all).
	Shard, Shards int
	// NewChecker builds an org's checker; tests replace it.
	NewChecker func(checks.Target, ...checks.Option) *checks.Checker
	// RunOnStart runs each new or changed org's check soon after it is
	// added rather than at its first regular run: orgs added together run
	// within a window that grows with their number (firstRunWindow: 5 orgs
	// at once, 10,000 over 20 s), each at its regular run when that falls
	// in the window, else at a place in it given by its name. An org whose
	// result restored from the store is younger than its interval waits for
	// its regular run.
	RunOnStart bool
	// Instruments, when set, is told when checks start and finish.
	Instruments Instruments
	// Alerts receives the alert notifications; nil evaluates alerts
	// (Alerts shows them) but sends nothing, so none ever fires.
	Alerts AlertSender
	// Clock tells the time of alerts, backoffs and the login budget; time.Now when nil.
	Clock func() time.Time
	// Store keeps rotated refresh tokens, alert state and last results
	// across restarts; nil keeps them in memory only.
	Store *store.Store
	// ExternalURL is where tokenwatch is reachable (--web.external-url):
	// each alert's generatorURL links to its org on the status page there.
	ExternalURL string
}

// Instruments receive the agent's own health signals.
type Instruments interface {
	// CheckStarted is called when a check got its concurrency slot after waiting.
	CheckStarted(waited time.Duration)
	// CheckLate is called when a scheduled check starts, with how long
	// after its due time: the dispatcher's own delay and the slot wait.
	CheckLate(lateness time.Duration)
	// CheckFinished is called when it gave the slot back.
	CheckFinished()
	// LoginSent is called for each token request a check sent.
	LoginSent()
	// LoginDeferred is called for a check that did not log in: reason is
	// "backoff" or "budget".
	LoginDeferred(reason string)
	// StoreFailed is called when writing to the state store failed.
	StoreFailed()
}

// ErrStopped is returned by Apply once Stop has begun.
var ErrStopped = errors.New("agent stopped")

// errReplaced: a probe looked up an org job that a reload then replaced.
var errReplaced = errors.New("org replaced by a reload")

// Agent schedules and runs the checks of every configured org.
type Agent struct {
	logger *slog.Logger
	opts   Options
	// timetable holds every org's next run; dispatch runs them.
	timetable *timetable
	// firstRunSpacing is firstRunSpacing but in benchmarks of a round of
	// checks, which run every org at once.
	firstRunSpacing time.Duration

	// ctx is the context of every check; Stop cancels it when its grace
	// period runs out.
	ctx    context.Context
	cancel context.CancelFunc

	// applyMu makes one Apply at a time. What Apply builds outside mu
	// (checkers, transports, restored results) it reads from fields that
	// only Apply writes: orgs (under mu too), transports, chains,
	// chainOrgs and loaded.
	applyMu sync.Mutex

	mu   sync.Mutex
	orgs map[string]*orgJob
	// sem bounds concurrent scheduled checks; probeSem the /probe checks,
	// apart, so a /probe flood never holds up the schedule. Both are
	// replaced when their bound changes.
	sem      chan struct{}
	probeSem chan struct{}
	global   configs.Global
	started  bool
	stopping bool
	stopped  chan struct{}
	once     sync.Once
	// tasks tracks every goroutine the agent starts (the dispatcher, the
	// checks, /probe checks, closing replaced checkers), so Stop waits for them.
	tasks sync.WaitGroup
	// transports are those of the running configuration, one per distinct
	// HTTP client configuration of the orgs.
	transports transportPool
	// chains are the refresh token chains by digest of the configured
	// refresh token, kept for the life of the process (chainLocked);
	// chainOrgs indexes the orgs of the stored chains during one Apply.
	chains    map[string]*checks.RefreshChain
	chainOrgs map[string]bool
	logins    *loginBudget
	// loaded says whether the results and alert state of the store were read.
	loaded bool
	// state writes results and alert state to the store behind the checks.
	state *stateWriter

	alerts *alerter
}

// orgJob is one org's schedule entry, checker and last result.
type orgJob struct {
	agent   *Agent
	org     configs.Org
	info    checks.Info
	checker *checks.Checker
	// entry is the org's place in the timetable; transport is shared by
	// the orgs of the same HTTP client settings.
	entry     *entry
	transport *sharedTransport
	timeout   time.Duration
	// tls fingerprints the contents of the org's TLS files, so a renewed
	// certificate at the same path counts as a change on reload.
	tls string
	// identity is who the org logs in as, for the login budget; login
	// digests what it logs in with (loginDigest).
	identity, login string
	// running is set while a scheduled run goes on.
	running atomic.Bool

	mu   sync.Mutex
	last *checks.Result
	// rejections counts consecutive rejected logins; while it is positive
	// the org backs off until nextAttempt.
	rejections  int
	nextAttempt time.Time
	// lastForced is when /probe?force=1 last overrode the backoff.
	lastForced time.Time
	// probe is the /probe check in flight, which concurrent probes share.
	probe *probeCall
}

// probeCall is one /probe check; done closes when res and err are set.
type probeCall struct {
	done chan struct{}
	res  *checks.Result
	err  error
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
	if opts.Instruments == nil {
		opts.Instruments = noInstruments{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	state := newStateWriter(opts.Store, opts.Logger, opts.Instruments)
	a := &Agent{
		logger:          opts.Logger,
		opts:            opts,
		timetable:       newTimetable(),
		firstRunSpacing: firstRunSpacing,
		ctx:             ctx,
		cancel:          cancel,
		orgs:            map[string]*orgJob{},
		sem:             make(chan struct{}, 1),
		probeSem:        make(chan struct{}, 1),
		stopped:         make(chan struct{}),
		transports:      transportPool{},
		chains:          map[string]*checks.RefreshChain{},
		logins:          newLoginBudget(),
		state:           state,
		alerts:          newAlerter(opts.Logger, opts.Alerts, opts.Clock, state),
	}
	a.alerts.externalURL = opts.ExternalURL
	return a
}

// Start starts the dispatcher of the scheduled checks and the re-sending of
// firing alerts. Orgs applied before run from then on.
func (a *Agent) Start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping || a.started {
		// A run group may interrupt an actor before it executes.
		return
	}
	a.started = true
	a.state.start()
	a.tasks.Go(a.dispatch)
	a.tasks.Go(a.resendLoop)
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

// Stop stops scheduling and waits for running checks; when ctx ends first,
// it cancels them (a refresh already sent still runs to its own timeout, so
// a rotated token is not lost). Then it revokes kept tokens. When Stop
// returns, no goroutine of the agent runs.
//
// Firing alerts are not resolved: Alertmanager keeps them until their
// endsAt, and with a store the next start carries them on under their
// startsAt and resolves those whose org recovered meanwhile.
func (a *Agent) Stop(ctx context.Context) {
	// After an Apply in progress: it has finished, or will start nothing.
	a.applyMu.Lock()
	a.mu.Lock()
	a.stopping = true
	a.mu.Unlock()
	a.applyMu.Unlock()
	a.once.Do(func() { close(a.stopped) })
	done := make(chan struct{})
	go func() {
		a.tasks.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		a.logger.Warn("shutdown grace period over; cancelling running checks", "err", ctx.Err())
		a.cancel()
		<-done
	}
	a.cancel()
	a.mu.Lock()
	jobs := make([]*orgJob, 0, len(a.orgs))
	for _, j := range a.orgs {
		jobs = append(jobs, j)
	}
	slots := make(chan struct{}, cap(a.sem))
	a.mu.Unlock()
	// Revoke kept tokens with a fresh, short deadline (the grace period may be
	// spent) and no more at once than checks may run.
	revokeCtx, cancel := context.WithTimeout(context.Background(), revokeGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			j.checker.Close(revokeCtx)
		})
	}
	wg.Wait()
	for _, c := range a.chains {
		_ = c.Save()
	}
	// Last, so the results of the last checks are written too. What comes
	// later (acceptances of the last notifications) waits for FlushState.
	a.state.close()
}

// FlushState writes what reached the state store after Stop: the
// acceptances of the notifications delivered while shutting down. Call it
// after the notifications are delivered.
func (a *Agent) FlushState() { a.state.flush() }

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
// leaves the running configuration untouched. The first Apply also reads
// the store: the last results, backoffs and alert state of before a restart.
//
// Checks go on meanwhile: Apply compares and builds without the agent's
// lock, holds it only to swap the changed orgs in, and updates the
// timetable in O(log n) per added or removed org.
func (a *Agent) Apply(cfg *configs.Config) error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	stopping := a.stopping
	a.mu.Unlock()
	if stopping {
		return ErrStopped
	}

	// Which orgs stay as they are, and which are added or changed. a.orgs
	// is only written by Apply, so it is read here without a.mu.
	type planned struct {
		org      configs.Org
		info     checks.Info
		tls      string
		sched    cron.Schedule
		interval time.Duration
		old      *orgJob
	}
	var (
		plan []planned
		errs []error
	)
	specs := specCache{}
	transports := transportPool{}
	keep := map[string]bool{}
	orgs := make([]configs.Org, 0, len(cfg.Orgs))
	infos := make(map[string]checks.Info, len(cfg.Orgs))
	for _, o := range cfg.Orgs {
		if !a.inShard(o.Name) {
			continue
		}
		keep[o.Name] = true
		tls := tlsFingerprint(o.HTTPClient.TLSConfig)
		old := a.orgs[o.Name]
		if old != nil && old.tls == tls && sameOrg(old.org, o) {
			transports.add(old.transport)
			orgs = append(orgs, old.org)
			infos[o.Name] = old.info
			continue
		}
		s, interval, err := specs.spread(o.Schedule, o.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("org %s: %w", o.Name, err))
			continue
		}
		info := o.Info()
		orgs = append(orgs, o)
		infos[o.Name] = info
		plan = append(plan, planned{org: o, info: info, tls: tls, sched: s, interval: interval, old: old})
	}
	shared := make([]*sharedTransport, len(plan))
	for i, p := range plan {
		t, err := transports.transport(a.transports, p.org)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		shared[i] = t
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	// Build the added and changed orgs, still without the lock.
	first := !a.loaded
	a.chainOrgs = nil
	checkedAt := time.Now()
	jobs := make([]*orgJob, len(plan))
	// runFirst: the org runs soon rather than at its first regular run.
	runFirst := make([]bool, len(plan))
	spreading := 0
	for i, p := range plan {
		j := &orgJob{agent: a, org: p.org, info: p.info, timeout: checkDeadline(p.org.Target), tls: p.tls,
			identity: p.org.LoginIdentity(), login: loginDigest(p.org), transport: shared[i]}
		opts := []checks.Option{checks.WithTransport(shared[i].rt), checks.WithLoginGate(j.loginGate)}
		if chain := a.chainLocked(p.org); chain != nil {
			// Shared with the replaced checker: a refresh it has in flight
			// finishes, and saves its rotated token, before this one's starts.
			opts = append(opts, checks.WithRefreshChain(chain))
		}
		j.checker = a.opts.NewChecker(p.org.Target, opts...)
		if p.old == nil && first {
			a.restoreLocked(j)
		}
		j.entry = &entry{job: j, sched: p.sched, index: -1}
		jobs[i] = j
		if a.opts.RunOnStart && !freshResult(j.last, checkedAt, p.interval) {
			runFirst[i] = true
			spreading++
		}
	}
	var gone []*orgJob
	for name, j := range a.orgs {
		if !keep[name] {
			gone = append(gone, j)
		}
	}

	// Swap them in.
	a.mu.Lock()
	if n := max(cfg.Global.MaxConcurrentChecks, 1); cap(a.sem) != n {
		// Running checks release into the old channel; new ones use the new bound.
		a.sem = make(chan struct{}, n)
	}
	if n := max(cfg.Global.Probe.MaxConcurrent, 1); cap(a.probeSem) != n {
		a.probeSem = make(chan struct{}, n)
	}
	a.global = cfg.Global
	a.logins.setLimit(cfg.Global.LoginBudget)
	for _, j := range gone {
		delete(a.orgs, j.org.Name)
		a.forget(j.org.Name)
	}
	for _, j := range jobs {
		if old := a.orgs[j.org.Name]; old != nil {
			// A changed org starts afresh (no backoff: the change may be the
			// fix) but keeps showing its last result until its next check.
			old.mu.Lock()
			j.last = old.last
			old.mu.Unlock()
			gone = append(gone, old)
		}
		a.orgs[j.org.Name] = j
	}
	// Revoking kept tokens does not hold up the reload; Stop waits for it.
	a.closeLocked(gone)
	configured := len(a.orgs)
	a.mu.Unlock()
	a.transports = transports

	if first {
		a.alerts.load()
		a.loaded = true
		a.pruneResults(keep)
	}
	a.alerts.configure(cfg.Alerting)
	a.alerts.setOrgs(orgs, infos)
	if first {
		a.alerts.resume()
	}

	// Schedule the added and changed orgs, after the alerter knows them.
	now := time.Now().UTC()
	removed := make([]*entry, 0, len(gone))
	for _, j := range gone {
		removed = append(removed, j.entry)
	}
	for i, j := range jobs {
		j.entry.next = j.entry.sched.Next(now)
		if !runFirst[i] {
			continue
		}
		// An org whose regular run falls in the window runs there, once;
		// the others get a first run in the window. Either way every org
		// runs within it, at an even rate, and none runs twice in a row.
		window := spreadWindow(a.firstRunSpacing, spreading, plan[i].interval)
		if j.entry.next.IsZero() || j.entry.next.Sub(now) >= window {
			j.entry.next = now.Add(firstRunOffset(j.org.Name, window))
		}
	}
	added := make([]*entry, 0, len(jobs))
	for _, j := range jobs {
		if !j.entry.next.IsZero() {
			added = append(added, j.entry)
		}
	}
	a.timetable.update(removed, added)

	a.logger.Info("configuration applied", "orgs", configured, "added_or_changed", len(jobs))
	return nil
}

// freshResult reports whether a result restored from the store is younger
// than the org's interval at now: the org then waits for its regular run.
func freshResult(last *checks.Result, now time.Time, interval time.Duration) bool {
	return last != nil && last.Loaded && interval > 0 && now.Sub(last.Start.Add(last.Duration)) < interval
}

// closeParallel bounds the checkers closed at once after a reload.
const closeParallel = 16

// closeLocked closes the checkers of removed or replaced orgs in the
// background (revoking kept tokens), each within its check deadline; Stop
// waits for them. Called with a.mu held and the agent not stopping.
func (a *Agent) closeLocked(jobs []*orgJob) {
	if len(jobs) == 0 {
		return
	}
	a.tasks.Go(func() {
		var wg sync.WaitGroup
		slots := make(chan struct{}, closeParallel)
		for _, j := range jobs {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				ctx, cancel := context.WithTimeout(a.ctx, j.timeout)
				defer cancel()
				j.checker.Close(ctx)
			})
		}
		wg.Wait()
	})
}

// checkDeadline bounds a whole check: discovery plus four requests.
func checkDeadline(t checks.Target) time.Duration {
	to := t.Timeout
	if to <= 0 {
		to = checks.DefaultTimeout
	}
	return 5*to + time.Second
}

// Run runs one scheduled run of the org now, in the caller's goroutine, as
// the dispatcher does (launch): skipped while the org's previous run still
// goes on, in a slot of max_concurrent_checks.
func (j *orgJob) Run() {
	a := j.agent
	if !j.running.CompareAndSwap(false, true) {
		a.logger.Debug("check skipped: the previous run of the org is still going on", "org", j.org.Name)
		return
	}
	defer j.running.Store(false)
	a.mu.Lock()
	sem := a.sem
	a.mu.Unlock()
	queued := time.Now()
	select {
	case sem <- struct{}{}:
	case <-a.stopped:
		return
	}
	defer func() { <-sem }()
	a.opts.Instruments.CheckStarted(time.Since(queued))
	defer a.opts.Instruments.CheckFinished()
	if _, err := j.check(a.ctx, false); err != nil {
		a.logger.Debug("check not run", "org", j.org.Name, "err", err)
	}
}

// check runs the org's check now, unless the org backs off after a
// rejected login (errNoLogin) or its login gate refused (the budget), and
// publishes the result. force overrides the backoff, at most once per
// backoff.initial, so that a /probe?force=1 in a scrape job cannot become a
// login per scrape; the backoff's doubling goes on if the login fails again.
func (j *orgJob) check(ctx context.Context, force bool) (*checks.Result, error) {
	a := j.agent
	now := a.opts.Clock()
	a.mu.Lock()
	initial := a.global.Backoff.Initial
	a.mu.Unlock()
	j.mu.Lock()
	backingOff := now.Before(j.nextAttempt)
	if backingOff && force && now.Sub(j.lastForced) >= initial {
		backingOff = false
		j.lastForced = now
	}
	j.mu.Unlock()
	if backingOff {
		a.opts.Instruments.LoginDeferred("backoff")
		return nil, fmt.Errorf("%w: the org backs off after a rejected login", ErrNoLogin)
	}
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	res := j.checker.Check(ctx)
	if res.Deferred != nil {
		return nil, res.Deferred
	}
	if err := a.ctx.Err(); err != nil {
		// Cancelled at shutdown: the result says nothing about the org.
		return res, err
	}
	j.backoff(res)
	j.publish(res)
	return res, nil
}

// probeKey marks the context of a /probe check, for the login gate.
type probeKey struct{}

// loginGate is asked by the checker right before each token request: the
// identity's login budget, of which /probe may spend at most half, so that
// /probe can never starve the scheduled checks.
func (j *orgJob) loginGate(ctx context.Context) error {
	a := j.agent
	probe := ctx.Value(probeKey{}) != nil
	if !a.logins.take(j.identity, a.opts.Clock(), probe) {
		a.opts.Instruments.LoginDeferred("budget")
		a.logger.Warn("login budget spent; check deferred", "org", j.org.Name, "identity", j.identity,
			"budget_per_hour", a.logins.limitNow(), "probe", probe)
		return fmt.Errorf("%w: the login budget of %s is spent", ErrNoLogin, j.identity)
	}
	a.opts.Instruments.LoginSent()
	return nil
}

// backoff starts, lengthens or ends the org's backoff after res, and notes
// the next attempt on res.
func (j *orgJob) backoff(res *checks.Result) {
	a := j.agent
	a.mu.Lock()
	b := a.global.Backoff
	a.mu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if !rejectedLogin(res.Outcome) {
		j.rejections, j.nextAttempt = 0, time.Time{}
		return
	}
	j.rejections++
	wait := backoffWait(b, j.rejections, res.RetryAfter)
	j.nextAttempt = a.opts.Clock().Add(wait)
	res.NextAttempt = j.nextAttempt
	a.logger.Warn("login rejected; backing off", "org", j.org.Name, "outcome", res.Outcome,
		"rejections", j.rejections, "next_attempt", j.nextAttempt.UTC().Format(time.RFC3339))
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
	rejections := j.rejections
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
	a.saveResult(j, res, rejections)
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

// ProbeOrg answers /probe: the org's last result when it is younger than
// opts.MaxAge, else a new check. Concurrent probes of one org share one
// check, which runs in the /probe slots (never the scheduled checks' ones)
// to its own deadline and is published like a scheduled one, even when ctx
// ends first: then ProbeOrg returns the last result, if any, and an error
// wrapping ErrStillRunning. While the org may not log in (backoff, budget)
// it returns the last result, if any, and an error wrapping ErrNoLogin.
func (a *Agent) ProbeOrg(ctx context.Context, name string, opts ProbeOptions) (checks.Info, *checks.Result, error) {
	a.mu.Lock()
	j, ok := a.orgs[name]
	maxAge := a.global.Probe.MaxAge
	a.mu.Unlock()
	if !ok {
		return checks.Info{}, nil, fmt.Errorf("%w %q", ErrUnknownOrg, name)
	}
	if opts.MaxAge >= 0 {
		maxAge = opts.MaxAge
	}
	j.mu.Lock()
	last := j.last
	j.mu.Unlock()
	if !opts.Force && maxAge > 0 && last != nil && !last.Loaded && a.opts.Clock().Sub(last.Start.Add(last.Duration)) < maxAge {
		return j.info, last, nil
	}
	call, err := j.startProbe(opts.Force)
	if errors.Is(err, errReplaced) {
		return a.ProbeOrg(ctx, name, opts)
	}
	if err != nil {
		return j.info, last, err
	}
	select {
	case <-call.done:
		if call.res == nil {
			return j.info, last, call.err
		}
		return j.info, call.res, call.err
	case <-ctx.Done():
		return j.info, last, fmt.Errorf("%w: %w", ErrStillRunning, ctx.Err())
	}
}

// startProbe joins the org's /probe check in flight or starts one.
func (j *orgJob) startProbe(force bool) (*probeCall, error) {
	a := j.agent
	// a.mu before j.mu, as everywhere.
	a.mu.Lock()
	defer a.mu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.probe != nil {
		return j.probe, nil
	}
	if a.stopping {
		return nil, ErrStopped
	}
	if a.orgs[j.org.Name] != j {
		// A reload replaced or removed the org since the caller looked it up.
		return nil, errReplaced
	}
	call := &probeCall{done: make(chan struct{})}
	j.probe = call
	sem := a.probeSem
	a.tasks.Go(func() {
		defer func() {
			j.mu.Lock()
			j.probe = nil
			j.mu.Unlock()
			close(call.done)
		}()
		select {
		case sem <- struct{}{}:
		case <-a.stopped:
			call.err = ErrStopped
			return
		}
		defer func() { <-sem }()
		call.res, call.err = j.check(context.WithValue(a.ctx, probeKey{}, true), force)
	})
	return call, nil
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

// Alerts lists the alerts that are pending, being sent or firing, by org
// and alertname.
func (a *Agent) Alerts() []AlertStatus { return a.alerts.statuses() }

// AlertDestinationsAdded sends the alerts firing now to destinations just
// added by a reload, which would otherwise hear of them only at their next
// change (a webhook) or re-send (an Alertmanager).
func (a *Agent) AlertDestinationsAdded(names []string) { a.alerts.sendFiringTo(names) }
