package responder

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// FuzzDecode feeds the decoder, and the responder behind it, any frame.
// Whatever decodes must have the lengths and checksums Decode promises,
// and every reply built from it must be a well-formed frame that Decode,
// reading it as a host would, never takes for a request: two responders
// on one LAN never answer each other.
func FuzzDecode(f *testing.F) {
	for _, h := range []string{synHex, arpRequestHex, synAckHex, rstHex, arpReplyHex} {
		f.Add(frame(f, h), true)
	}
	f.Add(frame(f, synHex), false)
	tb, err := newTable(&Config{
		LinkMAC: net.HardwareAddr{0x02, 0x18, 0xc6, 0x13, 0x00, 0x00},
		Groups:  []Group{{Open: []uint16{7440}}, {FilterRest: true, Loss: 50}},
		Hosts:   []Host{{netip.AddrFrom4(hostIP), 0}, {netip.AddrFrom4(ctlIP), 1}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, csumReady bool) {
		orig := bytes.Clone(b)
		var fr Frame
		ok := Decode(b, csumReady, &fr)
		if !bytes.Equal(b, orig) {
			t.Fatal("Decode wrote to its input")
		}
		if ok != (fr.Kind != None) {
			t.Fatalf("Decode returned %v with kind %d", ok, fr.Kind)
		}
		out := make([]byte, MaxReply)
		var replies [][]byte
		switch fr.Kind {
		case ARPRequest:
			replies = append(replies, bytes.Clone(out[:ARPReply(out, hostMAC, hostIP, &fr)]))
		case TCPSyn:
			if checksum(b[ethLen:ethLen+int(b[ethLen]&0x0f)*4], 0) != 0 {
				t.Fatal("a SYN with a wrong IP checksum decoded")
			}
			replies = append(replies, bytes.Clone(out[:SynAck(out, hostMAC, &fr, 1)]), bytes.Clone(out[:Reset(out, hostMAC, &fr)]))
		}
		if n, _ := tb.answer(b, csumReady, out); n > 0 {
			replies = append(replies, out[:n])
		}
		for _, r := range replies {
			var back Frame
			if Decode(r, true, &back) {
				t.Fatalf("a reply decodes as a request: %x", r)
			}
			if len(r) > MaxReply {
				t.Fatalf("a reply of %d bytes", len(r))
			}
			if r[12] == 0x08 && r[13] == 0x00 {
				ip := r[ethLen:]
				if checksum(ip[:ipLen], 0) != 0 {
					t.Fatalf("reply with a wrong IP checksum: %x", r)
				}
				var src, dst [4]byte
				copy(src[:], ip[12:16])
				copy(dst[:], ip[16:20])
				if checksum(ip[ipLen:], pseudoSum(src, dst, len(ip)-ipLen)) != 0 {
					t.Fatalf("reply with a wrong TCP checksum: %x", r)
				}
			}
		}
	})
}
