package agent

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tokenwatch/tokenwatch/configs"
)

// maxCronSpread bounds how far a cron-spec run is delayed, so "0 9 * * *"
// still runs around nine.
const maxCronSpread = time.Minute

// spreadSchedule parses spec and places the org's runs at a fixed offset
// derived from its name, so a thousand orgs on "@every 1m" do not all fire
// in the same second, and each org keeps its phase across restarts.
func spreadSchedule(spec, org string) (cron.Schedule, error) {
	s, _, err := specCache{}.spread(spec, org)
	return s, err
}

// specCache parses each distinct schedule spec of a configuration once:
// ten thousand orgs on "@every 1m" share one parse.
type specCache map[string]*parsedSpec

type parsedSpec struct {
	s   cron.Schedule
	err error
	// span is the gap between two consecutive runs, which bounds the
	// offset; interval is the longest gap (scheduleInterval).
	span, interval time.Duration
}

func (c specCache) parse(spec string) *parsedSpec {
	if p, ok := c[spec]; ok {
		return p
	}
	p := &parsedSpec{}
	c[spec] = p
	p.s, p.err = configs.ParseSchedule(spec)
	if p.err != nil {
		p.err = fmt.Errorf("schedule %q: %w", spec, p.err)
		return p
	}
	if every, ok := p.s.(cron.ConstantDelaySchedule); ok {
		p.span = max(every.Delay, time.Second)
		p.interval = p.span
		return p
	}
	// Estimate the interval from two consecutive runs.
	first := p.s.Next(time.Now())
	p.span = min(p.s.Next(first).Sub(first), maxCronSpread)
	p.interval = longestGap(p.s)
	return p
}

// spread is spreadSchedule with the spec parsed once; it also returns the
// longest gap between the org's runs.
func (c specCache) spread(spec, org string) (cron.Schedule, time.Duration, error) {
	p := c.parse(spec)
	if p.err != nil {
		return nil, 0, p.err
	}
	sum := nameHash(org)
	if _, ok := p.s.(cron.ConstantDelaySchedule); ok {
		return gridSchedule{period: p.span, offset: time.Duration(sum % uint64(p.span))}, p.interval, nil
	}
	if p.span <= 0 {
		return p.s, p.interval, nil
	}
	return offsetSchedule{inner: p.s, offset: time.Duration(sum % uint64(p.span))}, p.interval, nil
}

// nameHash is the fixed hash of an org's name that places its runs.
func nameHash(org string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(org))
	return h.Sum64()
}

// gridSchedule fires at every k*period + offset since the Unix epoch.
type gridSchedule struct {
	period, offset time.Duration
}

func (g gridSchedule) Next(t time.Time) time.Time {
	n := t.UnixNano() - int64(g.offset)
	k := n/int64(g.period) + 1
	if n < 0 && n%int64(g.period) != 0 {
		k--
	}
	return time.Unix(0, k*int64(g.period)+int64(g.offset)).In(t.Location())
}

// offsetSchedule delays every run of a cron schedule by a fixed offset.
type offsetSchedule struct {
	inner  cron.Schedule
	offset time.Duration
}

func (o offsetSchedule) Next(t time.Time) time.Time {
	return o.inner.Next(t.Add(-o.offset)).Add(o.offset)
}

// intervalRuns is how many consecutive runs scheduleInterval looks at: more
// than a week of a once-a-weekday schedule, so its weekend gap counts.
const intervalRuns = 8

// scheduleInterval is the longest gap between consecutive runs of spec over
// its next few runs: how long the org may go without a check. 0 for a spec
// that does not parse.
func scheduleInterval(spec string) time.Duration {
	s, err := configs.ParseSchedule(spec)
	if err != nil {
		return 0
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		return every.Delay
	}
	return longestGap(s)
}

// longestGap is the longest gap between consecutive runs of a cron
// schedule over its next intervalRuns runs.
func longestGap(s cron.Schedule) time.Duration {
	var longest time.Duration
	// UTC, as the agent runs its schedules, so no DST change skews a gap.
	prev := s.Next(time.Now().UTC())
	for range intervalRuns {
		next := s.Next(prev)
		if next.IsZero() {
			break
		}
		longest = max(longest, next.Sub(prev))
		prev = next
	}
	return longest
}
