package probe

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/ifl-project/ifl/proto"
	"github.com/ifl-project/ifl/synscan"
)

// failingSYN answers its first targets as closed, then fails as a raw
// socket whose sends fail would.
type failingSYN struct{ after int }

var errSend = errors.New("sendto: operation not permitted")

func (f *failingSYN) Stream(ctx context.Context, in <-chan synscan.Target, out chan<- synscan.Result) (synscan.Stats, error) {
	var st synscan.Stats
	for t := range in {
		if st.Sent == f.after {
			return st, errSend
		}
		st.Sent++
		out <- synscan.Result{Target: t, State: synscan.Closed}
	}
	return st, nil
}

func (f *failingSYN) Close() error { return nil }

// TestPipelineReportsSYNFailure: a SYN stage that fails ends the run with
// its error, not as a complete run, and leaves no goroutine blocked.
func TestPipelineReportsSYNFailure(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	var addrs []netip.Addr
	for a, i := netip.MustParseAddr("198.18.200.1"), 0; i < 200; a, i = a.Next(), i+1 {
		addrs = append(addrs, a)
	}
	pl := &Pipeline{Prober: &Prober{Key: key, Port: 7440}, SYN: &failingSYN{after: 3}}
	out := make(chan Result, len(addrs))
	done := make(chan error, 1)
	var st PipelineStats
	go func() {
		var err error
		st, err = pl.Run(context.Background(), addrs, out)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errSend) {
			t.Fatalf("Run: %v, want the SYN stage's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its SYN stage failed")
	}
	if st.SynSent != 3 || st.SynClosed != 3 {
		t.Errorf("stats %+v, want the 3 SYNs sent before the failure", st)
	}
}
