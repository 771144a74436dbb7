package agent

import (
	"maps"
	"slices"
	"strings"

	"github.com/tokenwatch/tokenwatch/checks"
)

// States returns every configured org of this shard with its last result,
// sorted by name. The snapshot shares nothing the agent changes: the labels
// are copied, and results are never modified after they are published. A
// result that finished after its org was removed or replaced is never in
// it (publish drops it).
func (a *Agent) States() []checks.OrgState {
	a.mu.Lock()
	jobs := make([]*orgJob, 0, len(a.orgs))
	for _, j := range a.orgs {
		jobs = append(jobs, j)
	}
	a.mu.Unlock()
	out := make([]checks.OrgState, 0, len(jobs))
	for _, j := range jobs {
		j.mu.Lock()
		last := j.last
		j.mu.Unlock()
		info := j.info
		if info.Labels != nil {
			info.Labels = maps.Clone(info.Labels)
		}
		out = append(out, checks.OrgState{Info: info, Last: last})
	}
	slices.SortFunc(out, func(x, y checks.OrgState) int { return strings.Compare(x.Info.Name, y.Info.Name) })
	return out
}
