//go:build !linux

package synscan

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// dialTCP opens a TCP connection to ap and closes it again: nil if it
// was accepted, the dial's error otherwise.
func dialTCP(ctx context.Context, ap netip.AddrPort, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return err
	}
	c.Close() // it was accepted, whatever closing says
	return nil
}
