package notify

import (
	"container/list"

	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// queue is one destination's queue of messages, indexed so that adding,
// replacing and dropping a message cost the same with 10,000 queued as
// with ten: the Router enqueues under the caller's lock, every check tick.
type queue struct {
	all list.List // *entry, in queue order
	// firing and resends hold, in queue order, the entries a full queue
	// drops: firing alerts, and among them the re-sends, which go first.
	firing  list.List
	resends list.List
	// byAlert holds each alert's queued entries (by fingerprint), in queue
	// order: usually one, a resolve followed by a firing one at times.
	byAlert map[string][]*entry
}

type entry struct {
	msg                        alerting.Message
	inAll, inFiring, inResends *list.Element
}

func (q *queue) len() int { return q.all.Len() }

// front returns the first queued entry, or nil.
func (q *queue) front() *entry {
	if e := q.all.Front(); e != nil {
		return e.Value.(*entry)
	}
	return nil
}

// latest returns the last queued entry of the alert, or nil.
func (q *queue) latest(fingerprint string) *entry {
	if es := q.byAlert[fingerprint]; len(es) > 0 {
		return es[len(es)-1]
	}
	return nil
}

// queued returns the alert's queued entries, in queue order.
func (q *queue) queued(fingerprint string) []*entry { return q.byAlert[fingerprint] }

func (q *queue) pushBack(m alerting.Message) {
	e := &entry{msg: m}
	e.inAll = q.all.PushBack(e)
	if !m.Alert.Resolved() {
		e.inFiring = q.firing.PushBack(e)
		if m.Resend {
			e.inResends = q.resends.PushBack(e)
		}
	}
	if q.byAlert == nil {
		q.byAlert = map[string][]*entry{}
	}
	fp := m.Alert.Fingerprint
	q.byAlert[fp] = append(q.byAlert[fp], e)
}

// pushFront puts the messages, in their order, before everything queued.
func (q *queue) pushFront(ms []alerting.Message) {
	if q.byAlert == nil {
		q.byAlert = map[string][]*entry{}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		e := &entry{msg: m}
		e.inAll = q.all.PushFront(e)
		if !m.Alert.Resolved() {
			e.inFiring = q.firing.PushFront(e)
			if m.Resend {
				e.inResends = q.resends.PushFront(e)
			}
		}
		fp := m.Alert.Fingerprint
		q.byAlert[fp] = append([]*entry{e}, q.byAlert[fp]...)
	}
}

// replace puts m in e's place. m is of the same alert, and not firing if e
// is resolved, so e can only leave the firing and re-send lists.
func (q *queue) replace(e *entry, m alerting.Message) {
	e.msg = m
	if m.Alert.Resolved() && e.inFiring != nil {
		q.firing.Remove(e.inFiring)
		e.inFiring = nil
	}
	if (m.Alert.Resolved() || !m.Resend) && e.inResends != nil {
		q.resends.Remove(e.inResends)
		e.inResends = nil
	}
}

func (q *queue) remove(e *entry) {
	q.all.Remove(e.inAll)
	if e.inFiring != nil {
		q.firing.Remove(e.inFiring)
	}
	if e.inResends != nil {
		q.resends.Remove(e.inResends)
	}
	fp := e.msg.Alert.Fingerprint
	es := q.byAlert[fp]
	for i, x := range es {
		if x == e {
			es = append(es[:i:i], es[i+1:]...)
			break
		}
	}
	if len(es) == 0 {
		delete(q.byAlert, fp)
	} else {
		q.byAlert[fp] = es
	}
}

// oldestResend returns the first queued re-send of a firing alert, or nil.
func (q *queue) oldestResend() *entry {
	if e := q.resends.Front(); e != nil {
		return e.Value.(*entry)
	}
	return nil
}

// oldestFiring returns the first queued firing alert, or nil.
func (q *queue) oldestFiring() *entry {
	if e := q.firing.Front(); e != nil {
		return e.Value.(*entry)
	}
	return nil
}

// clear empties the queue.
func (q *queue) clear() { *q = queue{} }

// messages returns the queued messages in order.
func (q *queue) messages() []alerting.Message {
	out := make([]alerting.Message, 0, q.len())
	for e := q.all.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*entry).msg)
	}
	return out
}
