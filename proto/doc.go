// Package proto is the ifl wire protocol, spoken by the controller (client)
// and the agent (server) over one TCP connection: length-prefixed frames, a
// Noise handshake that authenticates both ends, and typed messages.
//
// Use Client or Server on a net.Conn, then Handshake, Send and Receive, or
// the Ping shortcut on the client side, as with crypto/tls. Discovery (see
// below) is a second, connectionless exchange over UDP: NewQuery, then
// Query.Check and Query.Answer on the agent, Answer.Open on the controller.
// Announcements (see below) are a third: NewAnnouncement on the agent,
// Announcement.Open on the controller.
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
// allocates more than MaxPayload bytes, whatever a header says; this one
// allocates as the payload's bytes come, so that a header that announces
// the largest payload costs about the bytes that follow it. A header
// with a wrong magic means the peer speaks another protocol; one with a
// length over MaxPayload ends the connection.
//
// # Keys
//
// A network key is 32 random bytes, the same on every controller and
// agent of a fleet; an agent's key is a Curve25519 private key, 32 bytes,
// its public half the agent's identity. Both are kept in files of one
// line: a tag, a space, the 32 bytes in standard base64 with padding, and
// a newline ("ifl-network-key-v1 ..." and "ifl-agent-key-v1 ..."), so
// that one passed where the other belongs is a clear error.
//
// # Handshake
//
// Noise_NXpsk0_25519_ChaChaPoly_BLAKE2s (noiseprotocol.org, revision 34),
// with the prologue "ifl/1" and the 32-byte network key as the PSK:
//
//	-> psk, e          hello    (frame type 1), controller to agent
//	<- e, ee, s, es    welcome  (frame type 2), agent to controller
//
// The prologue is the 5 ASCII bytes "ifl/1". A frame's payload is one
// Noise handshake message. The hello's Noise payload (what the message
// carries encrypted) is 8 bytes, the controller's clock in Unix
// nanoseconds, a signed integer, big endian; bytes after them are
// ignored. So a hello frame's payload is 56 bytes: the 32-byte ephemeral
// key, then the 8 bytes encrypted with their 16-byte tag. The welcome's
// Noise payload is empty: its frame payload is 96 bytes, the agent's
// ephemeral key (32), its static key encrypted (32 and a 16-byte tag),
// and the empty payload's tag (16).
//
// The agent answers a hello only if all of these hold, and otherwise closes
// the connection without sending a byte:
//
//   - it decrypts with one of the agent's network keys (psk0 makes a wrong
//     key fail here, before any Diffie-Hellman, and the agent's static key
//     is never sent to a peer without the network key);
//   - its timestamp is within MaxSkew (60 s) of the agent's clock;
//   - its ephemeral key (the first 32 bytes of the hello frame's
//     payload) was not seen in an accepted hello before: the agent
//     remembers each until the hello's timestamp plus MaxSkew, when the
//     hello would be refused as too old anyway, so a replayed hello gets
//     nothing;
//   - the agent can remember one more: an agent that holds as many
//     unexpired hellos as it has room for (ReplayFilter, 65,536 by
//     default) refuses new ones until some expire rather than forget one
//     that could still be replayed. Only holders of the network key can
//     fill it, so the agent does not count such a refusal against the
//     source address, which did nothing wrong. The filter takes memory
//     for the hellos it holds, not for its capacity, and gives it back
//     as they expire.
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
// An agent holds at most 128 connections that are not verified yet (ifl's
// default). A newcomer over that takes the place of one of the source
// that holds the most, counting sources by network first (a /24 for IPv4,
// a /64 for IPv6) and then by address; of that source's connections, one
// whose hello has not been answered goes before a welcomed one, and the
// oldest first. So a flood of silent connections, or of replayed hellos,
// drops only its own connections unless it spreads them so thin that no
// source holds more than the controller does: over at least as many
// addresses as there are places, and as many networks when it comes from
// outside the controller's. A connection dropped after its welcome is
// answered busy (see Messages); one dropped before it gets nothing, which
// a controller cannot tell from a wrong key.
//
// An agent keeps at most 64 verified connections, and 8 from one source
// address (ifl's defaults); each may stay idle for 30 s between requests.
// A newly verified connection over the cap of its address takes the place
// of that address's least recently active connection; over the total cap,
// the place of the least recently active connection of the source that
// holds the most (by network, then address, as above). The connection
// that gives way is closed without a word: its controller sees its next
// request go unanswered, as when an agent stops, and dials again. A
// connection serving a request keeps its place for the handshake
// deadline (5 s) from when the request came; past that, one whose reply
// its peer has still not read may give way. When no connection can give
// way, the newcomer's first request is answered busy. So a holder
// of the network key keeps 8 connections per address it controls, can
// hold every place only from 8 addresses or more, and even then gives a
// place up to each newcomer. What it can still do is make the agent
// answer busy by keeping all 64 connections serving requests at once, and
// close idle connections of other controllers by opening its own (a
// controller closes its connection after its pings anyway).
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
//	1    ping request: empty, or the controller's announcement port, a
//	     16-bit unsigned integer, big endian (see Announcements); later
//	     versions may add bytes after it: ignore them
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
// in order, on the same connection, until either side closes it.
// Operations are read-only. Error codes:
//
//	unsupported  a request of a type the agent does not know; the
//	             connection stays
//	internal     the agent could not build the answer; the connection stays
//	busy         the agent has no room for this connection (see
//	             Verification) and closes it after this answer; the
//	             agent has proved its identity, the network key is
//	             right, and trying again later may succeed
//
// An agent answers busy to the first request of a connection, or, for a
// connection it dropped after the welcome, in place of that request's
// answer. A controller that does not know a code takes it as any error
// answer. An agent that closes the connection after a request without
// answering it is stopping (agents of earlier releases also did so over
// their cap of verified connections, and closed connections over it
// without answering the hello).
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
// A controller sends its queries with an IPv4 TTL and an IPv6 hop limit
// of 255 (DiscoveryHopLimit), to unicast, broadcast and multicast
// destinations alike. Every router lowers them, so a query that arrives
// with 255 was sent on the agent's own link, as NDP (RFC 4861) and GTSM
// (RFC 5082) check; an agent answers no other, so a controller that sends
// with the usual 64, or from beyond a router, gets no answer.
//
// An agent checks a datagram in this order, cheapest first, and sends
// nothing at all, no answer and no error, for one that fails any check:
//
//  1. its length is exactly QueryLen;
//  2. it has the query magic, version 1 and zero reserved and padding
//     bytes;
//  3. it arrived with TTL or hop limit 255, as the kernel tells
//     (IP_RECVTTL, IPV6_RECVHOPLIMIT);
//  4. its timestamp is within MaxSkew (60 s) of the agent's clock;
//  5. its MAC is right (compared in constant time) under the discovery
//     key of one of the agent's network keys;
//  6. its source is a unicast address and a port other than zero, on the
//     link the query came in on (IP_PKTINFO, IPV6_PKTINFO): a link-local
//     IPv6 address, or one inside a prefix of that interface's addresses
//     but an IPv4 subnet's network and broadcast addresses. Whatever
//     source a sender on the link forges, the answer stays on the link;
//  7. the agent's answer budget has a token: one budget for every source
//     together, a burst of 1,000 answers, then 1,000 a second. A budget
//     per source address would let a sender on the link that forges the
//     controller's address spend the controller's share;
//  8. its nonce was not seen in an accepted query within the skew window.
//     The nonce is recorded only here, with the budget's token (a replay
//     gives the token back), in a filter of 16,384 nonces. When the
//     filter is full the query is answered all the same, unrecorded:
//     only holders of the network key can fill it, they can make fresh
//     queries anyway, and a full filter that dropped new queries would
//     let them silence every controller.
//
// It answers with the discovery key that verified the query, each nonce
// once (while the filter has room). One query sent to a broadcast or
// all-nodes address reaches every agent of the link, so one query with a
// forged source buys the sender N answers of the query's size at an
// address of its choice, N being the agents of the link that hold the
// key: never an answer off the link, never a second one from an agent for
// the same nonce, and never more than 1,000 a second from one agent,
// whatever the queries.
//
// A controller accepts an answer only if it is exactly AnswerLen bytes
// with the answer magic, version 1 and a zero reserved byte, its nonce is
// that of a query it sent within the last MaxSkew, its MAC is right, and
// it comes from an address of the link that query went out on: the subnet
// of a broadcast address (but its network and broadcast addresses), the
// IPv6 prefixes and link-local addresses of the link of an all-nodes
// address, the prefixes of the link of a unicast address of a directly
// attached subnet, or that one address otherwise. It then opens the
// identity and dials the answer's source address at the answer's port (a
// controller that dials one port only drops answers naming another),
// each address once a round. An answer is bound to its query by the nonce
// and to the claimed identity by the MAC, but not to the address it came
// from: a copy of one answer sent from other addresses has its salt, and
// ifl counts it once. Only the handshake proves the identity: a holder of
// the network key can claim any fingerprint in an answer, from any
// address of the link, and a holder that also controls the address that
// answered can answer the handshake there with its own identity only. So
// that such answers cannot make a controller dial at will, ifl dials in
// one round at most 1,024 addresses for one query (each agent answers a
// query once: a link with more agents loses the surplus to each query;
// a round sends a query to each destination from each source address,
// and again for loss, each with its own bound) and at most 2 addresses
// of each kind (IPv4, link-local IPv6, other IPv6) for one claimed
// identity, past the addresses where it verified that identity before,
// which are dialled whatever else answers. A controller does not check
// the TTL or hop limit of answers: they must come from an address of the
// link and answer a nonce it sent, which a sender off the link never
// sees.
//
// What a holder of the network key on the link can still do to
// discovery: make every agent of the link send up to 1,000 answers a
// second to one address of the link; silence the agents, by sending them
// more than 1,000 good queries a second, so that a controller's query
// gets a token only by chance (ifl then says that a round heard no agent
// while its inventory has some on the link, and exits 1); make a round
// dial up to 2 addresses of each kind, all on the link, for each identity
// it claims, and up to 1,024 for one query, each dial a connection
// attempt (about 2 s to an empty address); and, answering faster than an
// agent that the controller has not verified at that address yet (a new
// or a moved agent), crowd out that agent's answer of one kind with 2
// forged ones claiming its identity, for that round. A probe that tries
// every address finds that agent. A sender without the key gets nothing
// from an agent (a query it replays, nothing either, but while a holder
// keeps the filter full), a sender off the link nothing at all, and a
// copy of an answer sent from another address counts for nothing.
//
// Broadcast and multicast are often lost: a controller repeats the query
// with a new nonce for the agents that a datagram missed (ifl sends two),
// and agents whose firewall drops the UDP port, or segments that filter
// broadcast, are found only by trying every address.
//
// # Announcements
//
// An agent tells the controllers of a change of its addresses at once,
// rather than wait for their next probe: when an address it can be
// reached at appears or goes (an address added or removed, a link up or
// down), it sends one UDP datagram, the announcement, from each new
// address (when only addresses went, from each address left) to each
// controller of that address's family. An announcement is a hint, as a
// discovery answer is: it carries no address, and a controller verifies
// the agent by handshake at the datagram's source address, and nowhere
// else, before it records anything. An agent follows at most 32 of its
// global addresses: past them, those it followed before are kept first,
// then the lowest (IPv4 before IPv6), so that router advertisements from
// a rogue router, each one more address, cannot push out the host's
// own.
//
// Where to announce: a controller that listens for announcements puts
// its UDP port in every ping request; an agent remembers the source
// addresses of the latest 8 pings that carried one and verified (one
// entry per address, the port of its latest ping), and adds the
// controllers of its configuration (at most 16, unicast addresses or
// host names; names looked up at each change, all together within 2 s,
// a name whose lookup fails keeping its last answer; port 7441,
// DefaultAnnouncePort, when none is given). So the controller
// chooses its port, and one that runs an agent too has no clash.
//
// An agent sends an announcement again with back-off, at 0, 0.25, 0.75,
// 1.75, 3.75, 7.75, 15.75, 31.75 and 63.75 s after the change, each time
// with a new nonce, until a verified ping from that controller's address reaches
// the announced address: the controller's verification is the
// acknowledgement, and a controller sends nothing else back. It sends at
// most 64 datagrams at once and 16 a second after that, to every
// controller together, so a flapping link cannot make it flood them.
//
// An announcement is authenticated as discovery's datagrams are, with
// keys derived from the network key for announcements alone (other
// labels than discovery's, so no MAC of one is ever valid for the other):
//
//	Kmac = BLAKE2s-256(key = network key, "ifl/1 announcement mac")
//	Kid  = BLAKE2s-256(key = network key, "ifl/1 announcement identity")
//
// MAC(x) is the first 16 bytes of BLAKE2s-256(key = Kmac, x). An
// announcement is exactly 64 bytes (AnnouncementLen), all integers big
// endian:
//
//	offset size  field
//	0      4     magic "IFL+" (0x49 0x46 0x4c 0x2b)
//	4      1     protocol version, 1
//	5      1     reserved, zero
//	6      2     the agent's TCP port
//	8      8     timestamp: the agent's clock in Unix nanoseconds (signed)
//	16     16    nonce: random, new for every datagram sent
//	32     16    sealed identity: the agent's fingerprint XOR the first
//	             16 bytes of BLAKE2s-256(key = Kid, nonce)
//	48     16    MAC(bytes 0 to 47)
//
// The agent signs with its first network key (the current one during a
// rotation). The identity is sealed so that a listener without the key
// cannot follow an agent from address to address; the nonce makes every
// datagram's seal differ.
//
// A controller checks a datagram in this order, cheapest first, and
// sends nothing back for one that fails any check (ifl counts each
// refusal by its reason):
//
//  1. its length is exactly AnnouncementLen, with the magic, version 1
//     and a zero reserved byte;
//  2. its source is a unicast address, not a link-local one (a target
//     has no zone to dial it with: an agent announces from its global
//     addresses only), and a port other than zero, inside the targets
//     the controller watches: a datagram from elsewhere, forged or not,
//     costs no cryptography and starts nothing;
//  3. its timestamp is within MaxSkew (60 s) of the controller's clock;
//  4. its MAC is right (compared in constant time) under the
//     announcement key of the controller's network key;
//  5. its port is the agent port the controller dials;
//  6. its nonce was not seen in an accepted announcement within the skew
//     window (a filter of 16,384 nonces; when it is full, announcements
//     are taken unrecorded: only holders of the network key can fill it,
//     and they can make fresh announcements anyway);
//  7. the source address is not already waiting for or under
//     verification (then the announcement joins it), and the
//     controller's handshake budget has a token: a burst of 1,024, then
//     100 a second, for every source together, with at most 4,096
//     addresses waiting.
//
// It takes the waiting addresses in rounds of at most 1,024, those
// waiting longest first, and dials them within a second budget of the
// same size, shared by every round: 1,024 addresses at once, then 100 a
// second, at most 1,024 verifications in flight. So addresses that piled
// up while a round ran are dialled no faster than they were accepted.
// This budget is apart from the controller's probes: their own rate
// (ifl probe --rate) and the announcements' add up.
//
// It then verifies the source address with the handshake and ping, as a
// probe does (the same timeout and retries), and only a verified agent
// there that the inventory already knows is recorded (a move, its
// facts) exactly as a probe would record it. A new identity is left to
// the next probe, and an announcement round counts in no host's probes:
// a key holder can start such rounds at will, so the inventory's bounds
// that are measured in probes (a new host's probation, the names kept
// for forgotten hosts) stay measured in the controller's own probes.
// Announcements that arrive together are verified together, up to 1,024
// in one round and one update of the inventory.
//
// What a sender without the network key can do: nothing but make the
// controller read and drop datagrams. A forged, replayed or wrong-key
// announcement fails check 3, 4 or 6 and starts no connection; a copy of
// a genuine announcement sent from another address (its source forged)
// is refused as a replay if the genuine one came first, and otherwise
// makes the controller dial that address, once, if it is inside the
// targets, while the genuine one is then refused as a replay and the
// agent's next datagram, with a new nonce, goes through. Since nothing
// is sent back to a source but the handshake, within the targets and the
// budget, a forged source cannot turn the controller into a reflector.
//
// What a holder of the network key can do: make the controller dial
// addresses inside its targets, up to 1,024 at once and 100 a second
// (on top of its probes), each verified as a probe verifies an
// address: to an empty address 1 + --retries connection attempts (2 by
// default), each up to --timeout (1.1 s by default); to a port that
// opens and then stalls, up to 5 + --retries hedged connections (6 by
// default); none of it records anything unless an agent the inventory
// knows proves itself there (no new host: those are left to probes);
// spend that budget so that genuine announcements wait for the next
// probe (a lost announcement costs only time: the probes go on, and
// find the move);
// claim any identity in an announcement, which only the handshake
// decides; and make an agent announce to up to 8 addresses of its
// choice, by pinging it from them, pushing out a controller it learned
// from pings until that controller's next ping (controllers in the
// agent's configuration stay).
package proto
