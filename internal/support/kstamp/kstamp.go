// Package kstamp reads when the kernel received a packet (SO_TIMESTAMPNS),
// on the clock a send time taken with time.Now is on. A round trip timed
// by the reader instead includes how long the reader waited for a CPU:
// on a busy two-core machine, tens of milliseconds for answers that came
// in tens of microseconds.
//
//	kstamp.Enable(fd)
//	n, oobn, _, _, _ := unix.Recvmsg(fd, buf, oob[:kstamp.OOBSize], 0)
//	rtt := kstamp.Parse(oob[:oobn]).Sub(sent) // zero time: not stamped
package kstamp

import (
	"encoding/binary"
	"time"
)

// OOBSize is room for the timestamp's control message.
const OOBSize = 64

// Received turns a struct timespec of the wall clock (a control message's
// data) into a time on the monotonic clock; the zero time if it is not
// one, or is more than a second old or in the future (the wall clock
// stepped).
func Received(ts []byte) time.Time {
	var sec, nsec int64
	switch len(ts) {
	case 16:
		sec, nsec = int64(binary.NativeEndian.Uint64(ts)), int64(binary.NativeEndian.Uint64(ts[8:]))
	case 8:
		sec, nsec = int64(int32(binary.NativeEndian.Uint32(ts))), int64(int32(binary.NativeEndian.Uint32(ts[4:])))
	default:
		return time.Time{}
	}
	now := time.Now()
	age := now.Sub(time.Unix(sec, nsec)) // on the wall clock: time.Unix has no monotonic reading
	if age < 0 || age > time.Second {
		return time.Time{}
	}
	return now.Add(-age)
}
