package synscan

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/support/pace"
	"github.com/ifl-project/ifl/internal/support/rtt"
)

// connectFake runs a connect scan of targets over n's hosts.
func connectFake(t *testing.T, ctx context.Context, n *fakeNet, cfg *Config, targets []Target) ([]Result, Stats, error) {
	t.Helper()
	c := NewConnect(cfg)
	c.dial = n.dial
	res, st, err := streamAll(ctx, c, targets)
	noneLeft(t, "synscan.(*dialer)", "synscan.(*Connect)")
	return res, st, err
}

func TestConnectFindsEveryKindOfHost(t *testing.T) {
	n := newFakeNet()
	targets, want, wantDials := kinds(n)
	for i := range want {
		if n.hosts[want[i].Addr].unreachable {
			want[i].State = Down // connect: ENETUNREACH
			wantDials[want[i].Addr] = 1
		}
	}
	cfg := &Config{Timeout: 200 * time.Millisecond, Retries: 2, minWait: 20 * time.Millisecond}
	got, st, err := connectFake(t, context.Background(), n, cfg, targets)
	if err != nil {
		t.Fatal(err)
	}
	checkKinds(t, n, targets, want, wantDials, got, st, len(targets))
}

func TestDialTimeouts(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name     string
		hint     time.Duration
		answered time.Duration // a dial to the host that took this, before
		want     []time.Duration
	}{
		{"nothing known: Timeout", 0, 0, []time.Duration{100 * ms, 100 * ms, 100 * ms}},
		// Its last dial waits Timeout: the hint is a guess of how soon
		// its TCP answers.
		{"a host 0.3 ms away: the floor, backed off", 300 * time.Microsecond, 0, []time.Duration{5 * ms, 10 * ms, 100 * ms}},
		{"300 ms away: twice its round trip, past the ceiling", 300 * ms, 0, []time.Duration{600 * ms, 600 * ms, 600 * ms}},
		{"a port of it answered in 1 ms", 0, ms, []time.Duration{5 * ms, 10 * ms, 20 * ms}},
		// RFC 6298 gains: srtt 26.4 ms, rttvar 18.5 ms.
		{"one answer in 1 ms does not undo a hint of 30", 30 * ms, ms, []time.Duration{100 * ms, 100 * ms, 100 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConnect(nil)
			d := &dialer{c: c, hosts: map[netip.Addr]*dialHost{}, lim: rtt.Limits{Initial: c.cfg.Timeout, Floor: c.cfg.minWait}}
			h := d.host(Target{Addr: netip.MustParseAddr("198.18.40.12"), Port: 80, RTT: tt.hint})
			if tt.answered > 0 {
				d.record(h, tt.answered, true)
			}
			var got []time.Duration
			for try := range 3 {
				got = append(got, d.timeout(h, try))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("timeouts (-want +got):\n%s", diff)
			}
		})
	}
}

// On the clock: a dropped port of a host known to be near is given up
// after three short dials once another port has answered; a host that
// answers nothing gets Timeout for its last dial.
func TestConnectGivesUpADroppedPortSoon(t *testing.T) {
	n := newFakeNet()
	a := n.add("198.18.40.12", &fakeHost{dropped: []uint16{80}})
	dropped := Target{Addr: a, Port: 80, RTT: 300 * time.Microsecond}
	start := time.Now()
	res, st, err := connectFake(t, context.Background(), n, nil, []Target{{Addr: a, Port: 22, RTT: 300 * time.Microsecond}, dropped})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 250*time.Millisecond || st.Sent != 4 || res[1].State != Filtered {
		t.Errorf("%v after %v, %+v", res, d, st)
	}
	wantTimeouts(t, n, dropped, 5, 10, 20)

	n = newFakeNet()
	n.add("198.18.40.12", &fakeHost{filtered: true})
	if _, _, err := connectFake(t, context.Background(), n, nil, []Target{dropped}); err != nil {
		t.Fatal(err)
	}
	wantTimeouts(t, n, dropped, 5, 10, 100)
}

// wantTimeouts checks the times the dials to tg were given, in
// milliseconds.
func wantTimeouts(t *testing.T, n *fakeNet, tg Target, want ...time.Duration) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	got := n.timeouts[tg.key()]
	if len(got) != len(want) {
		t.Fatalf("dials given %v, want %v ms", got, want)
	}
	for i, w := range want {
		if w *= time.Millisecond; got[i] > w || got[i] < w-2*time.Millisecond {
			t.Errorf("dial %d given %v, want %v", i, got[i], w)
		}
	}
}

// The ports of a host that answered are not held to the rate: only the
// first dials to a host are.
func TestConnectPacesNewHostsOnly(t *testing.T) {
	n := newFakeNet()
	a := n.add("198.18.40.10", &fakeHost{open: []uint16{22}})
	b := n.add("198.18.40.11", &fakeHost{})
	c := n.add("198.18.40.12", &fakeHost{})
	var targets []Target
	for p := range uint16(100) {
		targets = append(targets, Target{Addr: a, Port: 1 + p})
	}
	targets = append(targets, Target{Addr: b, Port: 22}, Target{Addr: c, Port: 22})
	// 20 a second: the 102 dials would take five seconds if each were
	// paced.
	start := time.Now()
	res, st, err := connectFake(t, context.Background(), n, &Config{Rate: 20, minWait: 50 * time.Millisecond}, targets)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second || len(res) != len(targets) || st.Sent != len(targets) {
		t.Errorf("%d results, %+v, after %v", len(res), st, d)
	}
	// The new hosts were paced: 50 ms apart, but for what a pacer late on
	// its schedule catches up.
	if gap := n.syns(Target{Addr: c, Port: 22})[0].Sub(n.syns(Target{Addr: b, Port: 22})[0]); gap < 50*time.Millisecond-pace.MaxCatchUp-time.Millisecond {
		t.Errorf("new hosts dialled %v apart", gap)
	}
}

func TestConnectCancelled(t *testing.T) {
	n := newFakeNet()
	a := n.add("198.18.40.12", &fakeHost{filtered: true})
	ctx := cancelAtFirstProbe(n)
	within(t, 2*time.Second, func() {
		_, _, err := connectFake(t, ctx, n, &Config{Timeout: time.Hour}, []Target{{Addr: a, Port: 80}, {Addr: a, Port: 81}, {Addr: a, Port: 82}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Stream returned %v, want context.Canceled", err)
		}
	})
}
