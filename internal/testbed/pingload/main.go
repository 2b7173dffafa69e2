// Command pingload measures how many handshake + ping round trips an ifl
// agent serves per second: it keeps -c connections busy, each connecting,
// handshaking, pinging and closing in a loop, for -d, and prints the rate.
// scripts/bench-agent.sh runs it against an agent pinned to one core.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ifl-project/ifl/proto"
)

func main() {
	addr := flag.String("a", "127.0.0.1:7440", "agent address")
	keyFile := flag.String("k", "", "network key file")
	conc := flag.Int("c", 8, "connections at once")
	dur := flag.Duration("d", 5*time.Second, "how long")
	flag.Parse()
	key, err := proto.LoadNetworkKey(*keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pingload:", err)
		os.Exit(2)
	}
	var ok, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := &proto.ClientConfig{NetworkKey: key}
			for ctx.Err() == nil {
				c, err := net.Dial("tcp", *addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				pc := proto.Client(c, cfg)
				pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := pc.Ping(pctx); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
				pcancel()
				pc.Close()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("%.0f round trips/s (%d in %.1fs, %d failed)\n", float64(ok.Load())/secs, ok.Load(), secs, failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
