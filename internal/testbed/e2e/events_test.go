package e2e

import (
	"encoding/json"
	"io"
	"slices"
	"testing"
	"time"
)

// eventLog is a controller's JSON log, read event by event as it comes
// into a channel with room for all a test's events, so that the
// controller is never held up by a test that reads slowly.
type eventLog struct {
	events chan map[string]any // closed when the log ends
	seen   map[string]int      // the events next has taken, by name
	who    string              // the controller, in failures ("" for the only one)
}

// readEvents reads the JSON events of r, with room for room of them.
func readEvents(r io.Reader, room int, who string) *eventLog {
	l := &eventLog{events: make(chan map[string]any, room), seen: map[string]int{}, who: who}
	go func() {
		defer close(l.events)
		dec := json.NewDecoder(r)
		for {
			var ev map[string]any
			if err := dec.Decode(&ev); err != nil {
				return
			}
			l.events <- ev
		}
	}()
	return l
}

// next returns the next event called name, failing on one of the names
// in not before it, when the log ends, or after a minute (a hang).
func (l *eventLog) next(t testing.TB, name string, not ...string) map[string]any {
	t.Helper()
	who := ""
	if l.who != "" {
		who = l.who + ": "
	}
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-l.events:
			if !ok {
				t.Fatalf("%sthe watch ended before a %s event (events so far %v)", who, name, l.seen)
			}
			e, _ := ev["event"].(string)
			l.seen[e]++
			if slices.Contains(not, e) {
				t.Fatalf("%sa %s event before the %s event: %v", who, e, name, ev)
			}
			if e == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("%sno %s event within a minute (events so far %v)", who, name, l.seen)
		}
	}
}
