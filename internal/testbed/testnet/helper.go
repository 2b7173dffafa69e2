package testnet

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"syscall"
)

// Environment variables that turn a binary into the LAN's helper.
const (
	envHelper    = "IFL_TESTNET_HELPER"
	envHostname  = "IFL_TESTNET_HOSTNAME"
	envMachineID = "IFL_TESTNET_MACHINE_ID" // a file to bind over /etc/machine-id
	helperExec   = "exec"
	// helperHTTP, given as the program to exec, makes the helper serve
	// HTTP itself: the impostor.
	helperHTTP = "@impostor"
)

// A helper execs its service from the main goroutine, locked here to the
// process's first thread, so that the exec does not go through the
// kernel's swap of thread IDs (during which the process looks like a
// zombie).
func init() {
	if os.Getenv(envHelper) == helperExec {
		runtime.LockOSThread()
	}
}

// RunHelper makes the running binary act as the LAN's helper when it was
// started as one, and never returns then; otherwise it returns at once.
// Call it first in main, or in TestMain of tests that bring LANs up.
//
// The helper runs in a host's namespaces: it sets the hostname, then
// execs the service, or serves HTTP on the given address as an impostor.
func RunHelper() {
	if os.Getenv(envHelper) != helperExec {
		return
	}
	if err := helper(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "testnet helper: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helper(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no program")
	}
	if name := os.Getenv(envHostname); name != "" {
		if err := syscall.Sethostname([]byte(name)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	// ip netns exec runs us in a mount namespace of our own: a bind
	// mount here gives this host its own machine-id and no other.
	if f := os.Getenv(envMachineID); f != "" {
		if err := syscall.Mount(f, "/etc/machine-id", "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("machine-id: %w", err)
		}
	}
	os.Unsetenv(envHelper)
	os.Unsetenv(envHostname)
	os.Unsetenv(envMachineID)
	switch args[0] {
	case helperHostile:
		return serveHostile(args)
	case helperRelay:
		return serveRelay(args)
	case helperResponder:
		return serveResponder(args)
	}
	if args[0] == helperHTTP {
		if len(args) != 2 {
			return fmt.Errorf("usage: %s ADDR", helperHTTP)
		}
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		// The same readiness line an agent logs.
		fmt.Printf("{\"event\":\"listening\",\"addr\":%q}\n", ln.Addr().String())
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Server", "nginx")
			fmt.Fprintln(w, "hello from an impostor")
		}))
	}
	return syscall.Exec(args[0], args, os.Environ())
}
