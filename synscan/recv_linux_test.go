package synscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/support/readmark"
)

// queued is a packet in a scripted socket's receive queue.
type queued struct {
	data []byte
	oob  []byte
	from *unix.RawSockaddrInet6 // IPv6 only
}

// scriptedRecv is a recvmmsg over scripted receive queues, by fd, that
// records each call: "fd:n" for n messages read, "fd:EAGAIN" for none.
type scriptedRecv struct {
	queues map[int][]queued
	calls  []string
}

func (r *scriptedRecv) recvmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	q := r.queues[fd]
	if len(q) == 0 {
		r.calls = append(r.calls, fmt.Sprintf("%d:EAGAIN", fd))
		return 0, unix.EAGAIN
	}
	n := min(len(q), len(msgs))
	for i, p := range q[:n] {
		h := &msgs[i].Hdr
		msgs[i].Len = uint32(copy(unsafe.Slice(h.Iov.Base, h.Iov.Len), p.data))
		h.SetControllen(copy(unsafe.Slice(h.Control, h.Controllen), p.oob))
		if p.from != nil {
			*(*unix.RawSockaddrInet6)(unsafe.Pointer(h.Name)) = *p.from
			h.Namelen = unix.SizeofSockaddrInet6
		} else if h.Name != nil {
			h.Namelen = 0
		}
	}
	r.queues[fd] = q[n:]
	r.calls = append(r.calls, fmt.Sprintf("%d:%d", fd, n))
	return n, nil
}

// idleConn is a RawConn whose reads end, with errIdle, where a real one
// would wait for the poller.
type idleConn struct{}

var errIdle = errors.New("the reader would wait")

func (idleConn) Control(func(uintptr)) error    { return errors.ErrUnsupported }
func (idleConn) Write(func(uintptr) bool) error { return errors.ErrUnsupported }
func (idleConn) Read(f func(uintptr) bool) error {
	if f(0) {
		return nil
	}
	return errIdle
}

func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func stampOOB(at time.Time) []byte {
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts, uint64(at.Unix()))
	binary.NativeEndian.PutUint64(ts[8:], uint64(at.Nanosecond()))
	return cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts)
}

func pktinfoOOB(dst netip.Addr) []byte {
	b := make([]byte, unix.SizeofInet6Pktinfo)
	a := dst.As16()
	copy(b, a[:])
	return cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, b)
}

func ipv4Packet(t *testing.T, src, dst netip.Addr, proto layers.IPProtocol, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ip, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// read is what ReadFrom returned once.
type read struct {
	Seg      string
	From, To netip.Addr
	At       int64  // Unix nanoseconds
	Mark     string // ReadUpTo after it: the segment it is the arrival of; "": nothing read yet
}

// The reader takes a batch of segments from one socket with one
// recvmmsg, hands them out one at a time, in order, each with its own
// arrival stamp (and, for IPv6, its sender and destination), skips what
// is no TCP segment, then takes a batch from the other socket. While
// segments it read are held, the read mark goes no further than the
// last one handed out and handled, and the sockets do not count as
// empty.
func TestBatchedReaderInOrder(t *testing.T) {
	// Real sockets, which hold nothing: the reader asks them whether
	// they are empty, and reads them through the script.
	var fds [2]int
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		fds[i] = fd
	}
	fd4, fd6 := fds[0], fds[1]
	const zone = 7
	s := &sockets{recv4: fd4, recv6: fd6, route6: -1, rc: idleConn{}, rx4: newRxQueue(false), rx6: newRxQueue(true),
		names: map[int]string{zone: "veth0"}, mark: readmark.New()}
	script := &scriptedRecv{queues: map[int][]queued{}}
	s.rx4.recvmmsg = script.recvmmsg
	s.rx6.recvmmsg = script.recvmmsg

	// Arrivals in the last 300 ms (the kernel's stamps are no older than
	// a second), after the read mark's epoch.
	unread := readmark.New().UpTo(func() bool { return false })
	now := time.Now()
	base := later(unread, now.Add(-300*time.Millisecond))
	step := now.Sub(base) / 200
	stamp := func(i int) time.Time { return base.Add(time.Duration(i+1) * step).Round(0) }
	scanner4 := netip.MustParseAddr("198.18.41.1")
	scanner6 := netip.MustParseAddr("2001:db8:5::1")
	var want []read
	// 21 IPv4 packets: the 4th carries UDP, the others a segment each;
	// they arrive before the IPv6 ones, and are stamped so.
	for i := range 21 {
		from := netip.AddrFrom4([4]byte{198, 18, 41, byte(10 + i)})
		proto := layers.IPProtocolTCP
		if i == 3 {
			proto = layers.IPProtocolUDP
		}
		seg := fmt.Sprintf("v4-%d", i)
		script.queues[fd4] = append(script.queues[fd4], queued{data: ipv4Packet(t, from, scanner4, proto, []byte(seg)), oob: stampOOB(stamp(i))})
		if i != 3 {
			want = append(want, read{Seg: seg, From: from, To: scanner4, At: stamp(i).UnixNano()})
		}
	}
	// 4 IPv6 segments: the 2nd without its destination; the 3rd from a
	// link-local address, named with its interface.
	for i := range 4 {
		from := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 5, 15: byte(10 + i)})
		sa := &unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: from.As16()}
		if i == 2 {
			from = netip.MustParseAddr("fe80::5:2")
			sa.Addr, sa.Scope_id = from.As16(), zone
			from = from.WithZone("veth0")
		}
		oob := stampOOB(stamp(100 + i))
		if i != 1 {
			oob = append(oob, pktinfoOOB(scanner6)...)
		}
		seg := fmt.Sprintf("v6-%d", i)
		script.queues[fd6] = append(script.queues[fd6], queued{data: []byte(seg), oob: oob, from: sa})
		if i != 1 {
			want = append(want, read{Seg: seg, From: from, To: scanner6, At: stamp(100 + i).UnixNano()})
		}
	}
	// The order: the first batch of IPv4 (16 packets, 15 segments), the
	// IPv6 ones, the rest of IPv4.
	want = append(want[:15:15], append(want[20:], want[15:20]...)...)
	// The mark, after each: how far both sockets are read, each up to
	// the segment it handed out before the last one (which is handled
	// once ReadFrom is called again). IPv6 is not read at all before the
	// 16th read, and up to its second segment by the 17th.
	for i := range want {
		switch {
		case i <= 15:
			want[i].Mark = ""
		case i <= 18:
			want[i].Mark = want[14].Seg
		default:
			want[i].Mark = want[i-1].Seg
		}
	}

	var got []read
	var arrivals []time.Time // of each read, on the monotonic clock
	mark := func() string {
		at := s.ReadUpTo()
		if at.Equal(unread) {
			return ""
		}
		for i, a := range arrivals {
			if at.Equal(a) {
				return got[i].Seg
			}
		}
		return at.String()
	}
	b := make([]byte, 64)
	for range 2 * len(want) {
		n, arr, err := s.ReadFrom(b)
		if errors.Is(err, errIdle) {
			break
		}
		if err != nil {
			t.Fatalf("read %d: %v", len(got), err)
		}
		got = append(got, read{Seg: string(b[:n]), From: arr.From, To: arr.To, At: arr.At.UnixNano()})
		arrivals = append(arrivals, arr.At)
		got[len(got)-1].Mark = mark()
		if held := s.rx4.held() || s.rx6.held(); held && s.empty() {
			t.Errorf("read %d: segments are held, and the sockets count as empty", len(got))
		}
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
	wantCalls := []string{
		fmt.Sprintf("%d:16", fd4), fmt.Sprintf("%d:4", fd6), fmt.Sprintf("%d:5", fd4),
		fmt.Sprintf("%d:EAGAIN", fd6), fmt.Sprintf("%d:EAGAIN", fd4),
	}
	if diff := cmp.Diff(wantCalls, script.calls); diff != "" {
		t.Errorf("recvmmsg calls (-want +got):\n%s", diff)
	}
	// Both found empty: everything that came is read.
	if last := stamp(103); !s.ReadUpTo().After(last) {
		t.Errorf("read up to %v at the end, want after the last arrival %v", s.ReadUpTo(), last)
	}
}

// A recvmmsg that says it read more than it was given room for, or
// nothing without an error, is an error, not a read past the batch.
func TestBatchedReaderBadCounts(t *testing.T) {
	for _, n := range []int{0, rxBatch + 1} {
		q := newRxQueue(false)
		q.recvmmsg = func(int, []unix.Mmsghdr) (int, error) { return n, nil }
		var upTo time.Time
		_, _, _, _, ok, err := q.nextFrom(3, &upTo)
		want := fmt.Sprintf("recvmmsg returned %d of %d", n, rxBatch)
		if ok || err == nil || err.Error() != want {
			t.Errorf("recvmmsg returning %d: ok %v, %v; want not ok, %s", n, ok, err, want)
		}
		if q.held() || !upTo.IsZero() {
			t.Errorf("recvmmsg returning %d: held %v, read up to %v; want nothing", n, q.held(), upTo)
		}
	}
}
