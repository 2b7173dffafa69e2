package proto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Type: FrameHello, Length: 0},
		{Type: FrameWelcome, Length: 96},
		{Type: FrameTransport, Length: MaxPayload},
	} {
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		var got Header
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if got != h {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"http", []byte("HTTP/1.1 400 Bad Request\r\n"), ErrNotIFL},
		{"ssh", []byte("SSH-2.0-OpenSSH_9.2p1\r\n"), ErrNotIFL},
		{"version", []byte{'I', 'F', 'L', '\n', 9, 1, 0, 0, 0, 0, 0, 0}, ErrVersion},
		{"too large", []byte{'I', 'F', 'L', '\n', 1, 3, 0, 0, 0, 1, 0, 0}, ErrFrameTooLarge},
		{"huge", []byte{'I', 'F', 'L', '\n', 1, 3, 0, 0, 0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Header
			if err := h.UnmarshalBinary(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	var h Header
	if err := h.UnmarshalBinary([]byte{'I', 'F', 'L', '\n', 1, 7, 0, 0, 0, 0, 0, 0}); err == nil || !strings.Contains(err.Error(), "frame type 7") {
		t.Errorf("unknown type: got %v", err)
	}
	if err := h.UnmarshalBinary([]byte{'I', 'F', 'L', '\n', 1, 3, 0, 1, 0, 0, 0, 0}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("reserved bytes: got %v", err)
	}
	if _, err := (Header{Type: FrameTransport, Length: MaxPayload + 1}).MarshalBinary(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("marshal oversize: got %v", err)
	}
}

// countingReader fails the test if more than max bytes are requested at once,
// which would mean a header made the reader allocate more than it allows.
type countingReader struct {
	r   io.Reader
	max int
	t   *testing.T
}

func (c *countingReader) Read(p []byte) (int, error) {
	if len(p) > c.max {
		c.t.Fatalf("read of %d bytes, over the %d-byte bound", len(p), c.max)
	}
	return c.r.Read(p)
}

func TestReadFrameBoundsAllocation(t *testing.T) {
	// A header claiming 4 GiB must be refused before any payload is read.
	in := []byte{'I', 'F', 'L', '\n', 1, 3, 0, 0, 0xff, 0xff, 0xff, 0xff}
	fr := frameReader{r: &countingReader{r: bytes.NewReader(in), max: MaxPayload, t: t}}
	if _, _, err := fr.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if cap(fr.buf) != 0 {
		t.Errorf("allocated %d bytes for a refused frame", cap(fr.buf))
	}
}

func TestReadFrame(t *testing.T) {
	var stream []byte
	for _, p := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{7}, MaxPayload)} {
		var err error
		stream, err = appendFrame(stream, FrameTransport, p)
		if err != nil {
			t.Fatal(err)
		}
	}
	fr := frameReader{r: bytes.NewReader(stream)}
	for i, want := range []int{0, 5, MaxPayload} {
		typ, p, err := fr.ReadFrame()
		if err != nil || typ != FrameTransport || len(p) != want {
			t.Fatalf("frame %d: type %v, %d bytes, %v; want %d bytes", i, typ, len(p), err, want)
		}
	}
	if _, _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: got %v, want io.EOF", err)
	}
}

// TestReadFrameGrowsWithBytes: a header that announces the largest
// payload costs the reader what the peer sent, not what it announced;
// and a payload that comes a byte at a time is read whole.
func TestReadFrameGrowsWithBytes(t *testing.T) {
	h, _ := Header{Type: FrameHello, Length: MaxPayload}.MarshalBinary()
	fr := frameReader{r: bytes.NewReader(append(h, make([]byte, 100)...))}
	if _, _, err := fr.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	if cap(fr.buf) > minFrameBuf {
		t.Errorf("%d bytes held for a frame of which 100 came, want at most %d", cap(fr.buf), minFrameBuf)
	}
	want := make([]byte, MaxPayload)
	rand.Read(want)
	stream, _ := appendFrame(nil, FrameTransport, want)
	stream, _ = appendFrame(stream, FrameTransport, []byte("next"))
	fr = frameReader{r: iotest.OneByteReader(bytes.NewReader(stream))}
	if _, p, err := fr.ReadFrame(); err != nil || !bytes.Equal(p, want) {
		t.Fatalf("largest frame a byte at a time: %d bytes, %v", len(p), err)
	}
	if _, p, err := fr.ReadFrame(); err != nil || string(p) != "next" {
		t.Fatalf("the frame after it: %q, %v", p, err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	b, _ := appendFrame(nil, FrameTransport, []byte("hello"))
	fr := frameReader{r: bytes.NewReader(b[:len(b)-2])}
	if _, _, err := fr.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	// A short foreign answer is recognised as foreign.
	fr = frameReader{r: strings.NewReader("NO\n")}
	if _, _, err := fr.ReadFrame(); !errors.Is(err, ErrNotIFL) {
		t.Fatalf("short foreign answer: got %v, want ErrNotIFL", err)
	}
}

func TestAppendFrameOversize(t *testing.T) {
	if _, err := appendFrame(nil, FrameTransport, make([]byte, MaxPayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}
