// Package readmark tells how far a reader of packets has read, so that
// whoever waits for answers judges silence by what was read rather than
// by the clock. A reader that falls behind (a flood of answers, a machine
// short of CPU) leaves answers in its socket; a wait that ended by the
// clock alone would then give up probes whose answers had come.
//
// The reader sets the mark as it goes: Set(t) once everything that
// arrived before t is handled (a packet's kernel receive time, once the
// packet is dealt with: a socket's queue is first in, first out; or the
// time taken just before a read found the socket empty), Reading(true)
// before it reads and Reading(false) before it waits on an empty socket.
// The waiting side asks UpTo, which for a reader at rest is now, if the
// socket is still empty.
//
//	m := readmark.New()
//	// reader:   m.Reading(true); ...; m.Set(at); ...; m.Reading(false)
//	// waiter:   if !due.After(m.UpTo(socketEmpty)) { give up }
//	//           else wait for <-m.Advanced()
package readmark

import (
	"sync/atomic"
	"time"
)

// epoch is what a Mark counts from, on the monotonic clock.
var epoch = time.Now()

// Mark is how far a reader has read. The zero value is not usable: New.
type Mark struct {
	ns       atomic.Int64 // since epoch
	reading  atomic.Bool
	advanced chan struct{}
	// idle is when a reader at rest was last found with an empty socket,
	// since epoch: an earlier time is always true of what was read, so
	// it stands for a while without asking the socket again.
	idle atomic.Int64
}

// Recheck is how long an empty socket, once asked, stands for a reader at
// rest before the socket is asked again: asking costs system calls, and a
// scan's turns come far more often than a wait can end. A waiter that
// waits for the reader asks again after Recheck, since a reader at rest
// signals nothing.
const Recheck = 200 * time.Microsecond

// New returns a mark at its epoch: nothing read yet.
func New() *Mark { return &Mark{advanced: make(chan struct{}, 1)} }

// Set moves the mark to t, if that is later, and signals Advanced.
func (m *Mark) Set(t time.Time) {
	ns := int64(t.Sub(epoch))
	if ns <= m.ns.Load() {
		return
	}
	m.ns.Store(ns)
	select {
	case m.advanced <- struct{}{}:
	default:
	}
}

// Reading says whether the reader is at work (true) or waits on an
// empty socket (false).
func (m *Mark) Reading(on bool) { m.reading.Store(on) }

// Advanced is signalled when the mark moves.
func (m *Mark) Advanced() <-chan struct{} { return m.advanced }

// UpTo returns how far the reader has read: the mark, or now if the
// reader waits and empty (which asks the socket) says nothing has come
// since it last looked.
func (m *Mark) UpTo(empty func() bool) time.Time {
	at := epoch.Add(time.Duration(m.ns.Load()))
	now := time.Now()
	if m.reading.Load() || !at.Before(now) {
		return at
	}
	if idle := epoch.Add(time.Duration(m.idle.Load())); idle.After(at) && now.Sub(idle) < Recheck {
		return idle
	}
	if !empty() {
		return at
	}
	// The reader may have woken and taken a packet since it was asked.
	if m.reading.Load() {
		return at
	}
	m.idle.Store(int64(now.Sub(epoch)))
	return now
}
