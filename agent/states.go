package agent

import (
	"maps"
	"slices"
	"strings"

	"github.com/tokenwatch/tokenwatch/checks"
)

// OrgState is one configured org as the agent knows it: its identity and
// its last result. The agent is the one owner of both; the exporters (the
// Prometheus collector, the status page) read them through States at scrape
// or request time instead of keeping copies, so an org removed by a reload
// is gone from all of them at once.
type OrgState struct {
	Info checks.Info
	// Last is the org's last result: nil until its first check finished, or
	// a result read back from the store (Last.Loaded) until then. It is not
	// modified once published.
	Last *checks.Result
}

// States returns every configured org of this shard with its last result,
// sorted by name. The snapshot shares nothing the agent changes: the labels
// are copied, and results are never modified after they are published. A
// result that finished after its org was removed or replaced is never in
// it (publish drops it).
func (a *Agent) States() []OrgState {
	a.mu.Lock()
	jobs := make([]*orgJob, 0, len(a.orgs))
	for _, j := range a.orgs {
		jobs = append(jobs, j)
	}
	a.mu.Unlock()
	out := make([]OrgState, 0, len(jobs))
	for _, j := range jobs {
		j.mu.Lock()
		last := j.last
		j.mu.Unlock()
		info := j.info
		if info.Labels != nil {
			info.Labels = maps.Clone(info.Labels)
		}
		out = append(out, OrgState{Info: info, Last: last})
	}
	slices.SortFunc(out, func(x, y OrgState) int { return strings.Compare(x.Info.Name, y.Info.Name) })
	return out
}
