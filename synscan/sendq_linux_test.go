package synscan

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// sendResult is what a scripted sendmmsg returns.
type sendResult struct {
	n   int
	err error
}

// scriptedSend is a sendmmsg that returns its script's results in turn
// (then sends everything), and records what each call was given and what
// went out.
type scriptedSend struct {
	mu     sync.Mutex
	script []sendResult
	calls  []string    // fd: payloads, per call
	wire   []string    // the payloads sent, in order
	names  [][]byte    // the socket address of each sent
	ctls   [][]byte    // the control message of each sent
	times  []time.Time // when each was sent
}

func payload(h *unix.Mmsghdr) []byte {
	return unsafe.Slice(h.Hdr.Iov.Base, h.Hdr.Iov.Len)
}

func (s *scriptedSend) sendmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var got []string
	for i := range msgs {
		got = append(got, string(payload(&msgs[i])))
	}
	s.calls = append(s.calls, fmt.Sprintf("%d: %s", fd, strings.Join(got, " ")))
	r := sendResult{n: len(msgs)}
	if len(s.script) > 0 {
		r, s.script = s.script[0], s.script[1:]
	}
	if r.err != nil {
		return 0, r.err
	}
	r.n = min(r.n, len(msgs))
	for i := range r.n {
		h := &msgs[i].Hdr
		s.wire = append(s.wire, got[i])
		s.names = append(s.names, append([]byte(nil), unsafe.Slice(h.Name, h.Namelen)...))
		var ctl []byte
		if h.Control != nil {
			ctl = append(ctl, unsafe.Slice(h.Control, h.Controllen)...)
		}
		s.ctls = append(s.ctls, ctl)
		s.times = append(s.times, time.Now())
	}
	return r.n, nil
}

// newScriptedQueue returns a queue whose sender calls s.
func newScriptedQueue(t *testing.T, s *scriptedSend) *sendQueue {
	t.Helper()
	q := newSendQueue()
	q.sendmmsg = s.sendmmsg // before anything is handed to the sender
	t.Cleanup(q.close)
	return q
}

// sync hands what q holds to its sender and waits for it to be sent.
func (q *sendQueue) sync() {
	q.flush()
	b := make([]*sendBatch, 0, sendBatches)
	for range sendBatches {
		b = append(b, <-q.empty)
	}
	for _, x := range b {
		q.empty <- x
	}
}

// A batch goes out in one call per run of messages to one socket; a call
// that sent only some is followed by one from the first unsent; a
// message that fails alone is counted (a refusal) or reported (any other
// error, with where it went) and skipped; an interrupted call is made
// again. Every message goes out once at most, in order.
func TestSendQueuePartialSends(t *testing.T) {
	dst := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}) }
	for _, tt := range []struct {
		name   string
		fds    []int
		script []sendResult
		calls  []string
		wire   []string
		err    error // what failed() returns, then nil
		errDst int   // the address the error names (0: none)
	}{
		{
			name:  "all sent, one call per run of a socket",
			fds:   []int{3, 3, 4, 4, 4, 3},
			calls: []string{"3: m0 m1", "4: m2 m3 m4", "3: m5"},
			wire:  []string{"m0", "m1", "m2", "m3", "m4", "m5"},
		},
		{
			name:   "partial sends, a refusal and an interruption",
			fds:    []int{3, 3, 3, 4, 4},
			script: []sendResult{{n: 1}, {err: unix.ENOBUFS}, {n: 1}, {err: unix.EINTR}, {n: 1}, {n: 1}},
			calls:  []string{"3: m0 m1 m2", "3: m1 m2", "3: m2", "4: m3 m4", "4: m3 m4", "4: m4"},
			wire:   []string{"m0", "m2", "m3", "m4"},
			err:    unix.ENOBUFS,
		},
		{
			name:   "a refusal of no room and an error mid-batch: the error is reported",
			fds:    []int{3, 3, 3, 3},
			script: []sendResult{{n: 1}, {err: unix.EAGAIN}, {err: unix.EPERM}, {n: 1}},
			calls:  []string{"3: m0 m1 m2 m3", "3: m1 m2 m3", "3: m2 m3", "3: m3"},
			wire:   []string{"m0", "m3"},
			err:    unix.EPERM,
			errDst: 2,
		},
		{
			name:   "a call that returns neither a count nor an error",
			fds:    []int{3, 3},
			script: []sendResult{{n: 0}},
			calls:  []string{"3: m0 m1", "3: m1"},
			wire:   []string{"m1"},
			err:    errSentNone,
			errDst: 0,
		},
		{
			name:   "a message interrupted every time",
			fds:    []int{3},
			script: []sendResult{{err: unix.EINTR}, {err: unix.EINTR}, {err: unix.EINTR}, {err: unix.EINTR}, {err: unix.EINTR}, {err: unix.EINTR}, {err: unix.EINTR}, {err: unix.EINTR}, {err: unix.EINTR}},
			calls:  []string{"3: m0", "3: m0", "3: m0", "3: m0", "3: m0", "3: m0", "3: m0", "3: m0", "3: m0"},
			err:    unix.EINTR,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &scriptedSend{script: tt.script}
			q := newScriptedQueue(t, s)
			for i, fd := range tt.fds {
				if err := q.add(fd, nil, []byte(fmt.Sprintf("m%d", i)), nil, inet4Name(dst(i)), dst(i)); err != nil {
					t.Fatal(err)
				}
			}
			q.sync()
			if diff := cmp.Diff(tt.calls, s.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wire, s.wire); diff != "" {
				t.Errorf("sent (-want +got):\n%s", diff)
			}
			err := q.failed()
			switch {
			case tt.err == nil && err != nil:
				t.Errorf("failed: %v, want nil", err)
			case tt.err != nil && !errors.Is(err, tt.err):
				t.Errorf("failed: %v, want %v", err, tt.err)
			case tt.errDst > 0 && !strings.Contains(err.Error(), dst(tt.errDst).String()+":"):
				t.Errorf("failed: %v, want it to name %v", err, dst(tt.errDst))
			}
			if err := q.failed(); err != nil {
				t.Errorf("reported again: %v", err)
			}
			// The queue goes on.
			if err := q.add(3, nil, []byte("next"), nil, inet4Name(dst(9)), dst(9)); err != nil {
				t.Fatal(err)
			}
			q.sync()
			if got := s.wire[len(s.wire)-1]; got != "next" {
				t.Errorf("after the batch: %q sent last, want next", got)
			}
		})
	}
}

// The refusals of a batch are reported together by the next add, which
// then queues nothing: its probe is sent again after a pause.
func TestSendQueueRefusalsFailTheNextAdd(t *testing.T) {
	s := &scriptedSend{script: []sendResult{{err: unix.ENOBUFS}, {err: unix.ENOBUFS}}}
	q := newScriptedQueue(t, s)
	a := netip.MustParseAddr("198.18.0.1")
	for _, p := range []string{"m0", "m1", "m2"} {
		if err := q.add(3, nil, []byte(p), nil, inet4Name(a), a); err != nil {
			t.Fatal(err)
		}
	}
	q.sync()
	err := q.add(3, nil, []byte("m3"), nil, inet4Name(a), a)
	if !errors.Is(err, syscall.ENOBUFS) || !strings.Contains(err.Error(), "2 probes refused") {
		t.Errorf("add after two refusals: %v, want ENOBUFS for 2", err)
	}
	q.sync()
	if diff := cmp.Diff([]string{"m2"}, s.wire); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
}

// Each kind of probe carries its socket address, and the IPv6 segment
// its control message; a frame is its Ethernet header and the packet.
func TestSendQueueNames(t *testing.T) {
	s := &scriptedSend{}
	q := newScriptedQueue(t, s)
	v4, v6 := netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("fe80::7")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 7}
	ctl := []byte("0123456789abcdefghijklmnopqrstuvwxyz0123") // 40 bytes
	if err := q.add(3, nil, []byte("ip4"), nil, inet4Name(v4), v4); err != nil {
		t.Fatal(err)
	}
	// An odd length first: the control message is aligned all the same.
	if err := q.add(4, nil, []byte("tcp6x"), ctl, inet6Name(v6, 5), v6); err != nil {
		t.Fatal(err)
	}
	if err := q.add(5, []byte("eth-header-14b"), []byte("ip4"), nil, linkName(9, mac), v4); err != nil {
		t.Fatal(err)
	}
	q.sync()
	if diff := cmp.Diff([]string{"ip4", "tcp6x", "eth-header-14bip4"}, s.wire); diff != "" {
		t.Fatalf("sent (-want +got):\n%s", diff)
	}
	le := binary.NativeEndian
	in4 := s.names[0]
	if len(in4) != unix.SizeofSockaddrInet4 || le.Uint16(in4) != unix.AF_INET || netip.AddrFrom4([4]byte(in4[4:8])) != v4 {
		t.Errorf("IPv4 address % x", in4)
	}
	in6 := s.names[1]
	if len(in6) != unix.SizeofSockaddrInet6 || le.Uint16(in6) != unix.AF_INET6 || netip.AddrFrom16([16]byte(in6[8:24])) != v6 || le.Uint32(in6[24:]) != 5 {
		t.Errorf("IPv6 address % x", in6)
	}
	ll := s.names[2]
	if len(ll) != unix.SizeofSockaddrLinklayer || le.Uint16(ll) != unix.AF_PACKET || binary.BigEndian.Uint16(ll[2:]) != unix.ETH_P_IP ||
		le.Uint32(ll[4:]) != 9 || ll[11] != 6 || net.HardwareAddr(ll[12:18]).String() != mac.String() {
		t.Errorf("link address % x", ll)
	}
	if s.ctls[0] != nil || string(s.ctls[1]) != string(ctl) || s.ctls[2] != nil {
		t.Errorf("control messages %q", s.ctls)
	}
}

// queuedNet is a PacketIO whose probes go through a sendQueue to a fake
// network: the queue's sender hands what it sends to the fake's hosts.
type queuedNet struct {
	*fakeNet
	q    *sendQueue
	send *scriptedSend
	mu   sync.Mutex
	// firstAt is when the first answer read arrived.
	firstAt time.Time
}

func newQueuedNet(t *testing.T, n *fakeNet, script []sendResult) *queuedNet {
	qn := &queuedNet{fakeNet: n, send: &scriptedSend{script: script}}
	qn.q = newScriptedQueue(t, qn.send)
	qn.q.sendmmsg = func(fd int, msgs []unix.Mmsghdr) (int, error) {
		sent, err := qn.send.sendmmsg(fd, msgs)
		for i := range sent {
			h := &msgs[i]
			name := unsafe.Slice(h.Hdr.Name, h.Hdr.Namelen)
			dst, src := netip.AddrFrom4([4]byte(name[4:8])), n.src4
			if binary.NativeEndian.Uint16(name) == unix.AF_INET6 {
				dst, src = netip.AddrFrom16([16]byte(name[8:24])), n.src6
			}
			// The fake fails no send here: neither enobufs nor
			// sendErr is set.
			_ = n.WriteTo(payload(h), src, dst)
		}
		return sent, err
	}
	return qn
}

func (qn *queuedNet) WriteTo(seg []byte, src, dst netip.Addr) error {
	if dst.Is4() {
		return qn.q.add(4, nil, seg, nil, inet4Name(dst), dst)
	}
	return qn.q.add(6, nil, seg, nil, inet6Name(dst, 0), dst)
}

func (qn *queuedNet) ReadFrom(b []byte) (int, Arrival, error) {
	n, arr, err := qn.fakeNet.ReadFrom(b)
	qn.mu.Lock()
	if err == nil && qn.firstAt.IsZero() {
		qn.firstAt = arr.At
	}
	qn.mu.Unlock()
	return n, arr, err
}

func (qn *queuedNet) Flush() { qn.q.flush() }

func (qn *queuedNet) Close() error {
	qn.q.close()
	return qn.fakeNet.Close()
}

// A scan whose probes are batched finds what one that sends each alone
// finds, when the kernel sends some batches only in part and refuses a
// probe: the refused probe is lost, reported by the next write (whose
// probe is held back and sent again after a pause), and tried again.
func TestRawOverBatchesSentInPart(t *testing.T) {
	n := newFakeNet()
	targets, want, _ := kinds(n)
	script := []sendResult{{n: 1}, {err: unix.ENOBUFS}}
	for range 20 {
		script = append(script, sendResult{n: 1}, sendResult{n: 2})
	}
	qn := newQueuedNet(t, n, script)
	r, err := New(&Config{Timeout: 200 * time.Millisecond}, qn)
	if err != nil {
		t.Fatal(err)
	}
	got, st, err := streamAll(context.Background(), r, targets)
	r.Close() // waits for the sender
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].RTT = 0
	}
	if diff := cmp.Diff(want, got, addrs); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	// Every probe counted sent went out, but the one refused.
	if st.Sent != len(qn.send.wire)+1 || st.Refused != 1 {
		t.Errorf("stats %+v, %d went out: want one refused, reported once, the others sent", st, len(qn.send.wire))
	}
}

// Batches carry only the probes the pacer let go: however late the
// sender runs, the k-th probe reaches the network no sooner than k
// intervals after the first was let go.
func TestBatchesKeepTheRate(t *testing.T) {
	const rate = 4000
	n := newFakeNet()
	var targets []Target
	for i := range 8 {
		a := n.add(netip.AddrFrom4([4]byte{198, 18, 40, byte(10 + i)}).String(), &fakeHost{open: []uint16{22}})
		for p := range 40 {
			targets = append(targets, Target{Addr: a, Port: uint16(20 + p), RTT: 100 * time.Microsecond})
		}
	}
	qn := newQueuedNet(t, n, nil)
	r, err := New(&Config{Rate: rate, minWait: 50 * time.Millisecond}, qn)
	if err != nil {
		t.Fatal(err)
	}
	res, st, err := streamAll(context.Background(), r, targets)
	r.Close() // waits for the sender
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(targets) || st.Retries != 0 || len(qn.send.times) != len(targets) {
		t.Fatalf("%d results and %d probes sent for %d targets, stats %+v", len(res), len(qn.send.times), len(targets), st)
	}
	// The first probe was let go at its answer's arrival less its
	// round trip: the hosts answer as the probe reaches them, and the
	// first answer read is the first probe's.
	var first time.Time
	for _, r := range res {
		if r.Target == targets[0] {
			first = qn.firstAt.Add(-r.RTT)
		}
	}
	interval := time.Second / rate
	for k, at := range qn.send.times {
		if turn := first.Add(time.Duration(k) * interval); at.Before(turn) {
			t.Fatalf("probe %d went out %v after the first was let go, before its turn at %v", k, at.Sub(first), turn.Sub(first))
		}
	}
	t.Logf("%d probes in %d calls; the last %v after the first", len(targets), len(qn.send.calls), qn.send.times[len(targets)-1].Sub(first))
}
