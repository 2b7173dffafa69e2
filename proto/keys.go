package proto

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// KeyLen is the length of a network key and of an agent's private key.
const KeyLen = 32

// Key file headers: the first word of a key file says what it holds, so that
// an agent key passed where a network key belongs is a clear error.
const (
	networkKeyTag  = "ifl-network-key-v1"
	identityKeyTag = "ifl-agent-key-v1"
)

// NetworkKey is the pre-shared key that every controller and agent of one
// fleet hold. It never crosses the wire: it is mixed into the handshake
// (Noise psk0), so a peer without it learns nothing.
type NetworkKey [KeyLen]byte

// Identity is an agent's static Curve25519 key pair. Its public half,
// through Fingerprint, names the agent across address changes.
type Identity struct {
	Private [KeyLen]byte
	Public  [KeyLen]byte
}

// NewNetworkKey returns a random network key.
func NewNetworkKey() (NetworkKey, error) {
	var k NetworkKey
	_, err := rand.Read(k[:])
	return k, err
}

// NewIdentity returns a random identity.
func NewIdentity() (Identity, error) {
	var priv [KeyLen]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return Identity{}, err
	}
	return identityFromPrivate(priv)
}

func identityFromPrivate(priv [KeyLen]byte) (Identity, error) {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Private: priv}
	copy(id.Public[:], pub)
	return id, nil
}

// Fingerprint returns the identity's fingerprint.
func (id Identity) Fingerprint() string { return Fingerprint(id.Public[:]) }

// Fingerprint names a static public key: the first 16 bytes of its SHA-256,
// in hex. It is what operators compare and what the inventory keys hosts by.
func Fingerprint(pub []byte) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}

// MarshalText encodes the key as a one-line key file body.
func (k NetworkKey) MarshalText() ([]byte, error) {
	return []byte(networkKeyTag + " " + base64.StdEncoding.EncodeToString(k[:])), nil
}

// UnmarshalText decodes a key written by MarshalText.
func (k *NetworkKey) UnmarshalText(b []byte) error {
	raw, err := decodeKey(b, networkKeyTag)
	if err != nil {
		return err
	}
	copy(k[:], raw)
	return nil
}

// MarshalText encodes the private key as a one-line key file body.
func (id Identity) MarshalText() ([]byte, error) {
	return []byte(identityKeyTag + " " + base64.StdEncoding.EncodeToString(id.Private[:])), nil
}

// UnmarshalText decodes a key written by MarshalText and derives the public
// key.
func (id *Identity) UnmarshalText(b []byte) error {
	raw, err := decodeKey(b, identityKeyTag)
	if err != nil {
		return err
	}
	v, err := identityFromPrivate([KeyLen]byte(raw))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

func decodeKey(b []byte, tag string) ([]byte, error) {
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != tag {
		want := "a network key"
		if tag == identityKeyTag {
			want = "an agent key"
		}
		if len(f) == 2 && (f[0] == networkKeyTag || f[0] == identityKeyTag) {
			return nil, fmt.Errorf("this is %s file, not %s", map[string]string{networkKeyTag: "a network key", identityKeyTag: "an agent key"}[f[0]], want)
		}
		return nil, fmt.Errorf("not %s: expected one line %q followed by the key in base64", want, tag)
	}
	raw, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(raw) != KeyLen {
		return nil, fmt.Errorf("bad %s: want %d bytes in base64", tag, KeyLen)
	}
	return raw, nil
}

// LoadNetworkKey reads a network key file.
func LoadNetworkKey(path string) (NetworkKey, error) {
	var k NetworkKey
	return k, loadKey(path, &k, "ifl keygen "+path)
}

// LoadIdentity reads an agent key file.
func LoadIdentity(path string) (Identity, error) {
	var id Identity
	return id, loadKey(path, &id, "ifl keygen --agent "+path)
}

type textKey interface{ UnmarshalText([]byte) error }

// maxKeyFile bounds what loadKey reads: a key file is one short line.
const maxKeyFile = 4096

func loadKey(path string, k textKey, hint string) error {
	// Refused before it is opened: opening a FIFO waits for a writer.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("key file %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("key file %s does not exist (create one with: %s)", path, hint)
	}
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("key file %s is not a regular file", path)
	}
	if err := checkPrivate(path, fi.Mode()); err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if err := k.UnmarshalText(bytes.TrimSpace(b)); err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return nil
}

// ErrKeyExposed is returned by LoadNetworkKey and LoadIdentity for a key
// file that its group or other users may read or write: whoever reads a
// network key can pose as any controller, and ssh refuses private keys in
// such files for the same reason.
var ErrKeyExposed = errors.New("key file is accessible to group or others")

// checkPrivate refuses a key file with any permission for group or others,
// unless it is a systemd credential: systemd makes those readable by the
// service alone, with a mode of its own choosing.
func checkPrivate(path string, mode fs.FileMode) error {
	if mode.Perm()&0o077 == 0 || isCredential(path) {
		return nil
	}
	return fmt.Errorf("%w: %s has mode %04o; a key must be private to its owner: chmod 600 %s", ErrKeyExposed, path, mode.Perm(), path)
}

// isCredential reports whether path lies in the service's credentials
// directory ($CREDENTIALS_DIRECTORY, set by systemd for LoadCredential=).
func isCredential(path string) bool {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(dir, abs)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// LoadOrCreateIdentity reads the agent key at path, or creates one (mode
// 0600, parent directory 0700) if the file does not exist. created reports
// which happened.
func LoadOrCreateIdentity(path string) (id Identity, created bool, err error) {
	id, err = LoadIdentity(path)
	if err == nil {
		return id, false, nil
	}
	if _, serr := os.Stat(path); !errors.Is(serr, fs.ErrNotExist) {
		return Identity{}, false, err
	}
	if id, err = NewIdentity(); err != nil {
		return Identity{}, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Identity{}, false, fmt.Errorf("creating agent key: %w", err)
	}
	if err := WriteKeyFile(path, id, false); err != nil {
		return Identity{}, false, err
	}
	return id, true, nil
}

// WriteKeyFile writes a key file with mode 0600. Without overwrite it fails
// if path exists. The file appears whole or not at all.
func WriteKeyFile(path string, k interface{ MarshalText() ([]byte, error) }, overwrite bool) error {
	body, err := k.MarshalText()
	if err != nil {
		return err
	}
	exists := fmt.Sprintf("%s already exists (use --force to replace it; every peer holding the old key must get the new one)", path)
	if _, ok := k.(Identity); ok {
		exists = fmt.Sprintf("%s already exists (use --force to replace it: the agent then has a new identity, which controllers see as a new host)", path)
	}
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return errors.New(exists)
		}
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("writing key %s: no directory %s (create it first: mkdir -p -m 0700 %s)", path, dir, dir)
	}
	tmp, err := os.CreateTemp(dir, ".ifl-key-*")
	if err != nil {
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(body, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if overwrite {
		return os.Rename(tmp.Name(), path)
	}
	// Link fails if path appeared meanwhile, so an existing key is never
	// replaced without --force.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return errors.New(exists)
		}
		return fmt.Errorf("writing key: %w", err)
	}
	return nil
}
