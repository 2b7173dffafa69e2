// Package etcdtest runs a cluster of real etcd members (Debian's
// etcd-server) for the tests of the packages that keep the inventory in
// etcd: on loopback (Start, StartTLS), or inside a network namespace of
// a test network, each member on an address of its own there (StartIn),
// for controllers in other namespaces to reach through routers. Each
// member's data is in the test's temporary directory; every process is
// stopped by its PID when the test ends.
//
//	c := etcdtest.Start(t, 3)
//	spec := c.Spec("/fleet", "timeout=5s") // etcd://127.0.0.1:PORT,.../fleet?timeout=5s
//	c.Stop(c.Leader())                     // kill the leader; Restart(i) brings it back
package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// Binary is the server the tests run.
const Binary = "etcd"

// Cluster is a running cluster.
type Cluster struct {
	t       testing.TB
	Members []*Member
	initial string
	// With StartTLS: the CA that signed the members' and the client's
	// certificates, and the client's certificate and key, as files.
	CA, Cert, Key string
	tls           *tls.Config
	// netns is the network namespace the members run in (StartIn);
	// empty for the caller's own.
	netns    string
	election time.Duration
}

// Net places a cluster in a network namespace, each member listening on
// an address of its own there (client port 2379, peer port 2380).
type Net struct {
	Namespace string
	Addrs     []netip.Addr // one per member
	// ElectionTimeout is how long followers wait for a lost leader
	// before they elect another; default 500ms. A longer one leaves
	// the cluster without a leader for that long when the leader dies.
	ElectionTimeout time.Duration
}

// Member is one etcd process.
type Member struct {
	Name   string
	Dir    string
	Client string // 127.0.0.1:PORT, or ADDR:2379 with StartIn
	Peer   string // http://127.0.0.1:PORT, or http://ADDR:2380 with StartIn
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
}

// Start starts an n-member cluster and waits until it has a leader. It
// skips the test when the etcd binary is not installed.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, false, Net{})
}

// StartTLS is Start with TLS on the client URLs: the members ask for a
// client certificate signed by the cluster's CA.
func StartTLS(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, true, Net{})
}

// StartIn starts a cluster of one member per address of n, inside the
// network namespace n.Namespace (which the caller made, and removes),
// and waits until it has a leader, asking from inside that namespace. It
// skips the test when the etcd binary is not installed.
func StartIn(t testing.TB, n Net) *Cluster {
	t.Helper()
	if n.Namespace == "" || len(n.Addrs) == 0 {
		t.Fatalf("etcdtest: StartIn needs a namespace and an address per member, got %q and %v", n.Namespace, n.Addrs)
	}
	return start(t, len(n.Addrs), false, n)
}

// Available reports why etcd cannot run here, or "" when it can.
func Available() string {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Sprintf("etcd is not installed (%v): apt-get install etcd-server to run the tests against a real etcd", err)
	}
	return ""
}

func start(t testing.TB, n int, withTLS bool, in Net) *Cluster {
	t.Helper()
	if why := Available(); why != "" {
		t.Skip(why)
	}
	c := &Cluster{t: t, netns: in.Namespace, election: in.ElectionTimeout}
	if c.election <= 0 {
		c.election = 500 * time.Millisecond
	}
	dir := t.TempDir()
	if withTLS {
		c.makeCerts(dir)
	}
	var peers []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), Dir: filepath.Join(dir, fmt.Sprintf("m%d", i))}
		if c.netns != "" {
			m.Client = netip.AddrPortFrom(in.Addrs[i], 2379).String()
			m.Peer = "http://" + netip.AddrPortFrom(in.Addrs[i], 2380).String()
		} else {
			m.Client = fmt.Sprintf("127.0.0.1:%d", freePort(t))
			m.Peer = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		}
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.Peer)
	}
	c.initial = strings.Join(peers, ",")
	t.Cleanup(func() {
		for i := range c.Members {
			c.Stop(i)
		}
	})
	for i := range c.Members {
		c.start(i)
	}
	for i := range c.Members {
		c.waitHealthy(i)
	}
	return c
}

// freePort is a loopback TCP port free when it is asked for.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *Cluster) start(i int) {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	scheme := "http://"
	var extra []string
	if c.tls != nil {
		scheme = "https://"
		extra = []string{"--cert-file", c.Cert, "--key-file", c.Key, "--trusted-ca-file", c.CA, "--client-cert-auth"}
	}
	argv := []string{Binary}
	if c.netns != "" {
		// ip netns exec execs etcd in place: the PID is etcd's.
		argv = []string{"ip", "netns", "exec", c.netns, Binary}
	}
	cmd := exec.Command(argv[0], append(append(argv[1:],
		"--name", m.Name, "--data-dir", m.Dir,
		"--listen-client-urls", scheme+m.Client, "--advertise-client-urls", scheme+m.Client,
		"--listen-peer-urls", m.Peer, "--initial-advertise-peer-urls", m.Peer,
		"--initial-cluster", c.initial, "--initial-cluster-state", "new", "--initial-cluster-token", filepath.Base(filepath.Dir(m.Dir)),
		"--logger", "zap", "--log-outputs", filepath.Join(filepath.Dir(m.Dir), m.Name+".log"),
		"--heartbeat-interval", "50", "--election-timeout", fmt.Sprint(c.election.Milliseconds())), extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// What is not in the log: ip's errors, etcd's before its logger.
	out, err := os.OpenFile(filepath.Join(filepath.Dir(m.Dir), m.Name+".out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting etcd member %s: %v", m.Name, err)
	}
	m.cmd = cmd
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(cmd, m.done)
}

// waitHealthy waits until member i says it is healthy (it has a
// leader), for at most a minute.
func (c *Cluster) waitHealthy(i int) {
	m := c.Members[i]
	cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: c.tls, DialContext: c.dial}}
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
	}
	var last string
	for range 600 {
		resp, err := cl.Get(scheme + m.Client + "/health")
		if err == nil {
			var b [256]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			last = string(b[:n])
			if resp.StatusCode == 200 && strings.Contains(last, `"health":"true"`) {
				return
			}
		} else {
			last = err.Error()
		}
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(filepath.Dir(m.Dir), m.Name+".log"))
			out, _ := os.ReadFile(filepath.Join(filepath.Dir(m.Dir), m.Name+".out"))
			c.t.Fatalf("etcd member %s exited before it was healthy; its output:\n%s\nits log:\n%s", m.Name, out, log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.t.Fatalf("etcd member %s not healthy after a minute: %s", m.Name, last)
}

// Stop kills member i by its PID and waits until it is gone.
func (c *Cluster) Stop(i int) {
	m := c.Members[i]
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts a stopped member i again, on its data, and waits until
// it is healthy.
func (c *Cluster) Restart(i int) {
	c.start(i)
	c.waitHealthy(i)
}

// RestartAll starts every stopped member and waits until all are
// healthy (a member alone is not: it needs a quorum).
func (c *Cluster) RestartAll() {
	for i := range c.Members {
		c.start(i)
	}
	for i := range c.Members {
		c.waitHealthy(i)
	}
}

// Endpoints are the members' client addresses, HOST:PORT.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Client)
	}
	return out
}

// Spec is the store URL of the cluster, under prefix, with opts
// (k=v&k=v) if any.
func (c *Cluster) Spec(prefix, opts string) string {
	s := "etcd://" + strings.Join(c.Endpoints(), ",") + prefix
	if opts != "" {
		s += "?" + opts
	}
	return s
}

// Client is a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	cfg := clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: c.tls}
	if c.netns != "" {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return c.dial(ctx, "tcp", addr) })}
	}
	cl, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Leader is the index of the member that leads, for at most a minute
// of asking.
func (c *Cluster) Leader() int {
	cl := c.Client()
	for range 600 {
		for i, m := range c.Members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cl.Status(ctx, m.Client)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("no etcd member leads after a minute")
	return -1
}

// dial connects from the members' namespace: a socket belongs to the
// network namespace of the thread that made it, for good.
func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if c.netns == "" {
		return d.DialContext(ctx, network, addr)
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread goes back to its namespace before it is
		// unlocked. It must not end instead: a member started from
		// it would get its parent-death signal (Pdeathsig follows the
		// thread, not the process).
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := os.Open("/run/netns/" + c.netns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("etcdtest: entering %s: %w", c.netns, err)}
			return
		}
		conn, err := d.DialContext(ctx, network, addr)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked, and ends with this goroutine
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// Logs are the members' logs, for a failing test to show.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, m := range c.Members {
		data, _ := os.ReadFile(filepath.Join(filepath.Dir(m.Dir), m.Name+".log"))
		fmt.Fprintf(&b, "== %s\n%s\n", m.Name, data)
	}
	return b.String()
}

// makeCerts makes a CA, a certificate for the members (127.0.0.1) and
// one for a client, signed by it, in dir.
func (c *Cluster) makeCerts(dir string) {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			c.t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			c.t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ifl test etcd CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		c.t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	c.CA = write("ca.pem", "CERTIFICATE", caDER)
	// One certificate for both ends: a server's for 127.0.0.1 and a
	// client's.
	k := key()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		c.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Cert = write("cert.pem", "CERTIFICATE", der)
	c.Key = write("key.pem", "EC PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c.tls = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}
