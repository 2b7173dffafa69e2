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
	addr := flag.String("a", "127.0.0.1:7440", "agent address")
	keyFile := flag.String("k", "", "network key file, for the controller's pings")
	from := flag.String("from", "127.0.0.3", "source address of the hostile load")
	ctl := flag.String("ctl", "127.0.0.2", "source address of the controller")
	idle := flag.Int("idle", 1500, "idle connections, opened and held")
	slow := flag.Int("slow", 100, "slowloris connections, each sending a byte a second")
	big := flag.Int("big", 100, "connections announcing the largest payload and sending a byte a second")
	garbage := flag.Int("garbage", 1000, "connections sending 4 KiB of random bytes, then closing")
	dur := flag.Duration("d", 5*time.Second, "how long")
	every := flag.Duration("every", 100*time.Millisecond, "time between the controller's pings")
	flag.Parse()
	key, err := proto.LoadNetworkKey(*keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostileload:", err)
		os.Exit(2)
	}
	hostile := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*from)}, Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()

	var opened atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	dial := func() net.Conn {
		c, err := hostile.DialContext(ctx, "tcp", *addr)
		if err != nil {
			return nil
		}
		opened.Add(1)
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		return c
	}
	// trickle sends b a byte a second on connections that it opens again
	// whenever the agent closes one, until the end.
	trickle := func(n int, b []byte) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					c := dial()
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
	hello, _ := proto.Header{Type: proto.FrameHello, Length: 56}.MarshalBinary()
	hello = append(hello, make([]byte, 56)...)
	largest, _ := proto.Header{Type: proto.FrameHello, Length: proto.MaxPayload}.MarshalBinary()
	largest = append(largest, make([]byte, 64)...)
	trickle(*slow, hello)
	trickle(*big, largest)
	wg.Add(2)
	go func() {
		defer wg.Done()
		// Held open, never written to, opened within the first second.
		for i := 0; i < *idle && ctx.Err() == nil; i++ {
			dial()
			if i%100 == 99 {
				time.Sleep(time.Second / time.Duration(max(1, *idle/100)))
			}
		}
	}()
	go func() {
		defer wg.Done()
		junk := make([]byte, 4096)
		gap := *dur / time.Duration(max(1, *garbage))
		for i := 0; i < *garbage && ctx.Err() == nil; i++ {
			if c, err := hostile.DialContext(ctx, "tcp", *addr); err == nil {
				opened.Add(1)
				rand.Read(junk)
				c.Write(junk)
				c.Close()
			}
			time.Sleep(gap)
		}
	}()

	// The controller, from its own address.
	cfg := &proto.ClientConfig{NetworkKey: key}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*ctl)}}
	var lat []time.Duration
	failed := 0
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for ctx.Err() == nil {
		start := time.Now()
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := d.DialContext(pctx, "tcp", *addr)
		if err == nil {
			pc := proto.Client(c, cfg)
			_, err = pc.Ping(pctx)
			pc.Close()
		}
		pcancel()
		if err != nil {
			failed++
			fmt.Fprintln(os.Stderr, "hostileload: ping:", err)
		} else {
			lat = append(lat, time.Since(start))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	cancel()
	wg.Wait()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var med, worst time.Duration
	if len(lat) > 0 {
		med, worst = lat[len(lat)/2], lat[len(lat)-1]
	}
	fmt.Printf("%d pings under a load of %d hostile connections: %d failed, median %.1f ms, slowest %.1f ms\n",
		len(lat)+failed, opened.Load(), failed, ms(med), ms(worst))
	if failed > 0 {
		os.Exit(1)
	}
}
