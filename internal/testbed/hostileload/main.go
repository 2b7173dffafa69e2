// Command hostileload loads an ifl agent the way a stranger without the
// network key can, and pings it meanwhile as a controller from another
// address: idle connections, slowloris hellos (a byte at a time), headers
// that announce the largest payload and send little of it, and garbage.
// It prints how the pings fared, and fails if one did.
// scripts/bench-agent-rss.sh runs it and reads the agent's memory.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ifl-project/ifl/proto"
)

func main() {
	c := parseFlags()
	key, err := proto.LoadNetworkKey(c.keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostileload:", err)
		os.Exit(2)
	}
	l := &load{c: c, dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.from)}, Timeout: time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), c.dur)
	defer cancel()
	l.ctx = ctx
	defer l.closeHeld()
	l.start()
	p := ping(ctx, c, key)
	cancel()
	l.wg.Wait()
	p.report(l.opened.Load())
	if p.failed > 0 {
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	addr, keyFile, from, ctl string
	idle, slow, big, garbage int
	dur, every               time.Duration
}

// parseFlags parses the command line, or exits.
func parseFlags() *config {
	c := &config{}
	flag.StringVar(&c.addr, "a", "127.0.0.1:7440", "agent address")
	flag.StringVar(&c.keyFile, "k", "", "network key file, for the controller's pings")
	flag.StringVar(&c.from, "from", "127.0.0.3", "source address of the hostile load")
	flag.StringVar(&c.ctl, "ctl", "127.0.0.2", "source address of the controller")
	flag.IntVar(&c.idle, "idle", 1500, "idle connections, opened and held")
	flag.IntVar(&c.slow, "slow", 100, "slowloris connections, each sending a byte a second")
	flag.IntVar(&c.big, "big", 100, "connections announcing the largest payload and sending a byte a second")
	flag.IntVar(&c.garbage, "garbage", 1000, "connections sending 4 KiB of random bytes, then closing")
	flag.DurationVar(&c.dur, "d", 5*time.Second, "how long")
	flag.DurationVar(&c.every, "every", 100*time.Millisecond, "time between the controller's pings")
	flag.Parse()
	return c
}

// load is the hostile side, from its own address, until ctx ends.
type load struct {
	c      *config
	ctx    context.Context
	dialer *net.Dialer
	opened atomic.Int64 // connections, of every kind
	wg     sync.WaitGroup
	mu     sync.Mutex
	held   []net.Conn // closed at the end, if the agent did not
}

// start starts every kind of load.
func (l *load) start() {
	hello, _ := proto.Header{Type: proto.FrameHello, Length: 56}.MarshalBinary()
	hello = append(hello, make([]byte, 56)...)
	largest, _ := proto.Header{Type: proto.FrameHello, Length: proto.MaxPayload}.MarshalBinary()
	largest = append(largest, make([]byte, 64)...)
	l.trickle(l.c.slow, hello)
	l.trickle(l.c.big, largest)
	l.wg.Add(2)
	go l.holdIdle()
	go l.sendGarbage()
}

// dial opens a connection and holds it, or returns nil.
func (l *load) dial() net.Conn {
	c, err := l.dialer.DialContext(l.ctx, "tcp", l.c.addr)
	if err != nil {
		return nil
	}
	l.opened.Add(1)
	l.mu.Lock()
	l.held = append(l.held, c)
	l.mu.Unlock()
	return c
}

// closeHeld closes the connections dial opened.
func (l *load) closeHeld() {
	l.mu.Lock()
	for _, c := range l.held {
		c.Close()
	}
	l.mu.Unlock()
}

// trickle sends b a byte a second on connections that it opens again
// whenever the agent closes one, until the end.
func (l *load) trickle(n int, b []byte) {
	ctx := l.ctx
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				c := l.dial()
				if c == nil {
					return
				}
				for i := 0; i < len(b) && ctx.Err() == nil; i++ {
					if _, err := c.Write(b[i : i+1]); err != nil {
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
				c.Close()
			}
		}()
	}
}

// holdIdle opens the idle connections: held open, never written to,
// opened within the first second.
func (l *load) holdIdle() {
	defer l.wg.Done()
	idle := l.c.idle
	for i := 0; i < idle && l.ctx.Err() == nil; i++ {
		l.dial()
		if i%100 == 99 {
			time.Sleep(time.Second / time.Duration(max(1, idle/100)))
		}
	}
}

// sendGarbage opens the garbage connections, spread over the run: each
// sends 4 KiB of random bytes and closes.
func (l *load) sendGarbage() {
	defer l.wg.Done()
	junk := make([]byte, 4096)
	gap := l.c.dur / time.Duration(max(1, l.c.garbage))
	for i := 0; i < l.c.garbage && l.ctx.Err() == nil; i++ {
		if c, err := l.dialer.DialContext(l.ctx, "tcp", l.c.addr); err == nil {
			l.opened.Add(1)
			rand.Read(junk)
			c.Write(junk)
			c.Close()
		}
		time.Sleep(gap)
	}
}

// pings are how the controller's pings fared.
type pings struct {
	lat    []time.Duration // of those answered
	failed int
}

// ping pings the agent as the controller, from its own address, every
// c.every until ctx ends.
func ping(ctx context.Context, c *config, key proto.NetworkKey) pings {
	cfg := &proto.ClientConfig{NetworkKey: key}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.ctl)}}
	var p pings
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for ctx.Err() == nil {
		start := time.Now()
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := d.DialContext(pctx, "tcp", c.addr)
		if err == nil {
			pc := proto.Client(conn, cfg)
			_, err = pc.Ping(pctx)
			pc.Close()
		}
		pcancel()
		if err != nil {
			p.failed++
			fmt.Fprintln(os.Stderr, "hostileload: ping:", err)
		} else {
			p.lat = append(p.lat, time.Since(start))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	return p
}

// report prints how the pings fared under a load of opened connections.
func (p pings) report(opened int64) {
	lat := p.lat
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var med, worst time.Duration
	if len(lat) > 0 {
		med, worst = lat[len(lat)/2], lat[len(lat)-1]
	}
	fmt.Printf("%d pings under a load of %d hostile connections: %d failed, median %.1f ms, slowest %.1f ms\n",
		len(lat)+p.failed, opened, p.failed, ms(med), ms(worst))
}
