// Package proto is the ifl wire protocol, spoken by the controller (client)
// and the agent (server) over one TCP connection: length-prefixed frames, a
// Noise handshake that authenticates both ends, and typed messages.
//
// Use Client or Server on a net.Conn, then Handshake, Send and Receive, or
// the Ping shortcut on the client side, as with crypto/tls. Discovery (see
// below) is a second, connectionless exchange over UDP: NewQuery, then
// Query.Check and Query.Answer on the agent, Answer.Open on the controller.
//
// # Frames
//
// Every frame is a 12-byte header followed by the payload:
//
//	offset size  field
//	0      4     magic "IFL\n" (0x49 0x46 0x4c 0x0a)
//	4      1     protocol version, 1
//	5      1     frame type: 1 hello, 2 welcome, 3 transport
//	6      2     reserved, zero
//	8      4     payload length, big endian, 0 to 65535 (MaxPayload)
//
// A reader checks the header before it reads the payload and never
// allocates more than MaxPayload bytes, whatever a header says. A header
// with a wrong magic means the peer speaks another protocol; one with a
// length over MaxPayload ends the connection.
//
// # Handshake
//
// Noise_NXpsk0_25519_ChaChaPoly_BLAKE2s (noiseprotocol.org, revision 34),
// with the prologue "ifl/1" and the 32-byte network key as the PSK:
//
//	-> psk, e          hello    (frame type 1), controller to agent
//	<- e, ee, s, es    welcome  (frame type 2), agent to controller
//
// The hello's payload is 8 bytes, the controller's clock in Unix
// nanoseconds, big endian; bytes after them are ignored. The welcome's
// payload is empty.
//
// The agent answers a hello only if all of these hold, and otherwise closes
// the connection without sending a byte:
//
//   - it decrypts with one of the agent's network keys (psk0 makes a wrong
//     key fail here, before any Diffie-Hellman, and the agent's static key
//     is never sent to a peer without the network key);
//   - its timestamp is within MaxSkew (60 s) of the agent's clock;
//   - its ephemeral key (the first 32 bytes of the hello's payload) was
//     not seen in an accepted hello before: the agent remembers them until
//     they leave the skew window, so a replayed hello gets nothing;
//   - the agent can remember one more: an agent that holds as many
//     unexpired hellos as it has room for (ReplayFilter, 65,536 by
//     default) refuses new ones until some expire rather than forget one
//     that could still be replayed. Only holders of the network key can
//     fill it, so the agent does not count such a refusal against the
//     source address, which did nothing wrong.
//
// # Verification
//
// A good hello proves that someone held the network key less than MaxSkew
// ago, not that the peer on this connection is that someone. A hello seen
// on its way to one agent can be replayed to another agent that shares the
// network key (each agent's filter is its own), or to the same agent after
// a restart (the filter is in memory), and gets a welcome there. The
// replayer can neither read the welcome nor send a transport message, since
// both need the hello's ephemeral private key. So an agent counts a
// connection as verified only when the controller's first transport
// message decrypts. Until then the connection holds no place under the
// agent's cap of verified connections, may be dropped for a newcomer, and
// must bring that message within the agent's handshake deadline (5 s by
// default); a controller sends its first request right after the welcome.
// A first transport message that does not decrypt counts as a failed
// hello against the source address; silence or a hang-up does not.
//
// The hello is not bound to the agent it is meant for, for two reasons.
// The controller does not know the agent's static key before the welcome
// (NX sends it there so that no peer without the network key sees it), so
// it cannot name the agent in the hello. And the address and port the
// controller dialled are not what the agent sees behind NAT, port
// forwarding or a load balancer, so binding to them would refuse honest
// controllers there. What a replay to another agent still gets is one
// welcome per captured hello: it costs the agent one handshake, holds
// nothing, and tells the replayer that an agent with the same network key
// listens at that address.
//
// The agent's static public key, received encrypted in the welcome, is its
// identity: Fingerprint gives its name, the first 16 bytes of its SHA-256
// in hex. It is created on the agent's first start and kept, so it
// survives address changes; a controller may require a given fingerprint.
//
// # Messages
//
// After the handshake each side sends transport frames whose payload is a
// Noise transport message (ChaCha20-Poly1305, nonces counting from zero in
// each direction; the controller encrypts with the first cipher state of
// Split and the agent with the second). The plaintext is one message: a
// type byte and a body.
//
//	type body
//	1    ping request: empty (later versions may add bytes; ignore them)
//	2    ping reply: a JSON object, the Facts type (hostname, machine_id,
//	     os, kernel, uptime_seconds, agent_version, interfaces,
//	     default_routes, labels, time, truncated); unknown keys are ignored
//	3    error: a JSON object {"code": "...", "message": "..."}
//
// A message, type byte included, is at most MaxMessage (65,519) bytes, so
// that it fits in one frame with its 16-byte authentication tag; there is
// no fragmentation. An agent whose facts would not fit leaves some out and
// says so in the reply's "truncated" key, an object of counts:
//
//	"truncated": {"interfaces": 912, "labels": 5000}
//
// "interfaces" is how many interfaces were left out of the "interfaces"
// list, "labels" how many labels out of the "labels" object; a zero count
// is omitted, and the key is absent when nothing was left out. The
// entries left keep their usual order. Which entries go first is the
// agent's choice; this one drops interfaces with no address outside
// loopback and link-local first, then labels (the last key in byte order
// first), then interfaces with such addresses, and the interfaces that
// carry a default route last. An agent that cannot fit an answer at all
// sends an error of code "internal" instead of closing the connection.
//
// The controller sends requests, the agent answers each with one message,
// in order, on the same connection, until either side closes it. An agent
// answers a type it does not know with an error of code "unsupported" and
// keeps the connection. Operations are read-only. An agent that closes the
// connection after a request without answering it is stopping, or is over
// its cap of verified connections (it checks the cap again when the first
// request verifies the connection, see Verification).
//
// # Discovery
//
// A controller finds the agents of a segment without trying every address:
// it sends one UDP datagram, the query, to the agent port at the
// segment's IPv4 broadcast address (198.18.16.255:7440) and at the IPv6
// all-nodes address of the link (ff02::1%eth0, port 7440), and every
// agent that holds the network key answers it with one datagram, unicast
// to the query's source address and port. An answer is a hint, not a
// proof: the controller then runs the handshake above with each address
// that answered, and only a verified handshake makes that address an
// agent. The agent listens for queries on UDP at its TCP port number, on
// the addresses it listens on with TCP (an agent bound to one unicast
// address sees no broadcast).
//
// Both datagrams are authenticated with a discovery key derived from the
// network key, never with the network key itself, using keyed BLAKE2s-256
// (RFC 7693; the key parameter set to the 32-byte network key, a 32-byte
// digest) over a fixed ASCII label:
//
//	Kmac = BLAKE2s-256(key = network key, "ifl/1 discovery mac")
//	Kid  = BLAKE2s-256(key = network key, "ifl/1 discovery identity")
//
// MAC(x) below is the first 16 bytes of BLAKE2s-256(key = Kmac, x). All
// integers are big endian. A query is exactly 64 bytes (QueryLen):
//
//	offset size  field
//	0      4     magic "IFL?" (0x49 0x46 0x4c 0x3f)
//	4      1     protocol version, 1
//	5      3     reserved, zero
//	8      8     timestamp: the controller's clock in Unix nanoseconds (signed)
//	16     16    nonce: random, new for every query sent
//	32     16    padding, zero: the query is as large as the answer
//	48     16    MAC(bytes 0 to 47)
//
// An answer is exactly 64 bytes (AnswerLen), never more than the query it
// answers, so an agent amplifies nothing:
//
//	offset size  field
//	0      4     magic "IFL!" (0x49 0x46 0x4c 0x21)
//	4      1     protocol version, 1
//	5      1     reserved, zero
//	6      2     the agent's TCP port
//	8      16    nonce, copied from the query
//	24     8     salt: random, new for every answer
//	32     16    sealed identity: the agent's fingerprint (the 16 bytes
//	             that Fingerprint shows in hex) XOR the first 16 bytes of
//	             BLAKE2s-256(key = Kid, nonce || salt)
//	48     16    MAC(bytes 0 to 47)
//
// The magics differ from each other and from a frame's "IFL\n", so a
// query is never taken for an answer or a frame, nor the other way round,
// and the MACs of the two datagrams never cover the same bytes. The
// identity is sealed so that a listener without the network key cannot
// follow an agent from address to address by its answers, just as the
// handshake never shows it the agent's static key; the salt makes the
// seal differ between agents answering one query.
//
// An agent checks a datagram in this order, cheapest first, and sends
// nothing at all, no answer and no error, for one that fails any check:
//
//  1. its length is exactly QueryLen;
//  2. it has the query magic, version 1 and zero reserved and padding
//     bytes;
//  3. its timestamp is within MaxSkew (60 s) of the agent's clock;
//  4. its MAC is right (compared in constant time) under the discovery
//     key of one of the agent's network keys;
//  5. its nonce was not seen in an accepted query within the skew window
//     (a filter of bounded size, as for hellos; when it is full, new
//     queries are dropped until entries expire);
//  6. its source is a unicast address and a port other than zero, and
//     that address has not had more answers than its rate allows (a token
//     bucket per source address: a burst of 8, then 2 a second).
//
// It answers with the discovery key that verified the query. A controller
// accepts an answer only if it is exactly AnswerLen bytes with the answer
// magic, version 1 and a zero reserved byte, its nonce is that of a query
// it sent within the last MaxSkew, and its MAC is right; it then opens the
// identity and dials the answer's source address at the answer's port (a
// controller that dials one port only drops answers naming another). An
// answer is bound to its query by the nonce and to the claimed identity by
// the MAC, but only the handshake proves the identity: a holder of the
// network key can claim any fingerprint in an answer, and a holder that
// also controls the address that answered can answer the handshake there
// with its own identity only.
//
// Broadcast and multicast are often lost: a controller repeats the query
// with a new nonce for the agents that a datagram missed (ifl sends two),
// and agents whose firewall drops the UDP port, or segments that filter
// broadcast, are found only by trying every address.
package proto
