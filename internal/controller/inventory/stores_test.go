package inventory

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestParseEtcd: a store URL gives endpoints, prefix, TLS, a user whose
// password is read from a file, and timeouts; anything else is refused,
// saying what is allowed.
func TestParseEtcd(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec string
		want EtcdConfig
	}{
		{"etcd://a:2379", EtcdConfig{Endpoints: []string{"http://a:2379"}, Prefix: "/ifl", Dial: DefaultEtcdDial, Request: DefaultEtcdRequest}},
		{"etcd://a:2379,b:2379/fleet/", EtcdConfig{Endpoints: []string{"http://a:2379", "http://b:2379"}, Prefix: "/fleet", Dial: DefaultEtcdDial, Request: DefaultEtcdRequest}},
		{"etcds://a:2379/x", EtcdConfig{Endpoints: []string{"https://a:2379"}, Prefix: "/x", TLS: true, Dial: DefaultEtcdDial, Request: DefaultEtcdRequest}},
		{"etcd://a:2379?ca=/c&cert=/k.crt&key=/k.key&user=probe&password-file=" + pw + "&dial-timeout=2s&timeout=3s",
			EtcdConfig{Endpoints: []string{"https://a:2379"}, Prefix: "/ifl", TLS: true, CA: "/c", Cert: "/k.crt", Key: "/k.key", User: "probe", Password: "s3cret", Dial: 2 * time.Second, Request: 3 * time.Second}},
	} {
		got, err := ParseEtcd(tc.spec)
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreUnexported(EtcdConfig{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.spec, diff)
		}
	}
	for _, tc := range []struct{ spec, want string }{
		{"etcd://u:p@a:2379", "inventory: store etcd://u:p@a:2379: want etcd://HOST:2379,HOST:2379/PREFIX, options after ?: ca=, cert=, key=, user=, password-file=, dial-timeout=, timeout= (no user or password in the URL)"},
		{"etcd://a", `inventory: store etcd://a: endpoint "a": want HOST:PORT`},
		{"etcd://a:1?password=x", `inventory: store etcd://a:1?password=x: unknown option "password": want ca, cert, key, user, password-file, dial-timeout or timeout`},
		{"etcd://a:1?user=x", "inventory: store etcd://a:1?user=x: user= and password-file= go together (a password is never given on a command line)"},
		{"etcd://a:1?cert=x", "inventory: store etcd://a:1?cert=x: cert= and key= go together"},
		{"etcd://a:1?timeout=0s", "inventory: store etcd://a:1?timeout=0s: timeout=0s: want a duration such as 5s"},
	} {
		if _, err := ParseEtcd(tc.spec); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %s", tc.spec, err, tc.want)
		}
	}
	if _, err := Open("nfs://x", "p"); err == nil || err.Error() != `inventory: store "nfs://x": want file (the JSON file, the default) or etcd://HOST:2379,HOST:2379/PREFIX` {
		t.Errorf("nfs: %v", err)
	}
}
