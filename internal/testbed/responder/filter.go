package responder

import "golang.org/x/net/bpf"

// readBuf is the longest frame read: a frame of a standard MTU. Longer
// ones are truncated, and then fail to decode.
const readBuf = 1514

// filterProgram is the packet socket's kernel filter: it passes ARP
// requests, and IPv4 TCP segments with SYN set and ACK, RST and FIN
// clear that are not a later fragment. The rest (the scanner's resets,
// its traffic to the LAN's other hosts) never reaches the responder.
func filterProgram() []bpf.Instruction {
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeARP, SkipFalse: 2},
		/* 2 */ bpf.LoadAbsolute{Off: ethLen + 6, Size: 2}, // ARP opcode
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: arpRequest, SkipTrue: 9, SkipFalse: 10},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIP, SkipFalse: 9},
		/* 5 */ bpf.LoadAbsolute{Off: ethLen + 9, Size: 1}, // protocol
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipFalse: 7},
		/* 7 */ bpf.LoadAbsolute{Off: ethLen + 6, Size: 2}, // flags and fragment offset
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: ipOffMask, SkipTrue: 5},
		/* 9 */ bpf.LoadMemShift{Off: ethLen}, // X: the IP header's length
		/* 10 */ bpf.LoadIndirect{Off: ethLen + 13, Size: 1}, // TCP flags
		/* 11 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: flagSYN | flagACK | flagRST | flagFIN},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: flagSYN, SkipFalse: 1},
		/* 13 */ bpf.RetConstant{Val: readBuf},
		/* 14 */ bpf.RetConstant{Val: 0},
	}
}
