package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// Signalled is the cause of a context that SignalContext cancelled.
type Signalled struct{ Signal os.Signal }

func (s *Signalled) Error() string { return s.Signal.String() + " signal received" }

// SignalContext returns a context cancelled at the first SIGINT or
// SIGTERM, with a *Signalled cause, and a function that stops listening.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			cancel(&Signalled{s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
	}
}

// terminated reports whether ctx was cancelled by SIGTERM: the way a
// service manager stops a service, which ends a --watch with status 0,
// where Ctrl-C (SIGINT), or any other end of ctx, interrupts it (130).
func terminated(ctx context.Context) bool {
	var s *Signalled
	return errors.As(context.Cause(ctx), &s) && s.Signal == syscall.SIGTERM
}
