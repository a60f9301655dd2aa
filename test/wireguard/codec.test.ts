// The two ways of configuring a WireGuard device, byte for byte: the kernel's generic-netlink
// family (layouts written out here from include/uapi/linux/wireguard.h and netlink's attribute
// rules, not produced by the encoder under test) and wireguard-go's UAPI text protocol. This
// machine's kernel has no WireGuard, so these bytes are how the netlink driver is checked.
import t from 'tap';
import { generateKeyPair, isWireGuardKey, publicKeyOf } from '../../gateways/wireguard/keys.ts';
import * as nl from '../../gateways/wireguard/netlink-codec.ts';
import * as uapi from '../../gateways/wireguard/uapi-codec.ts';

const KEY_A = Buffer.alloc(32, 0xaa).toString('base64');
const KEY_B = Buffer.alloc(32, 0xbb).toString('base64');

/** One netlink attribute as the spec lays it out: u16 length, u16 type, payload, zero padding to 4. */
function nla(type: number, payload: number[] | Buffer): number[] {
  const p = [...payload];
  const len = 4 + p.length;
  return [len & 0xff, len >> 8, type & 0xff, type >> 8, ...p, ...Array((4 - (len % 4)) % 4).fill(0)];
}
const NESTED = 0x8000;
const le16 = (v: number) => [v & 0xff, v >> 8];
const le32 = (v: number) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24];
const ifname = (name: string) => nla(2, [...Buffer.from(name), 0]); // WGDEVICE_A_IFNAME, NUL-terminated

t.test('SET_DEVICE: private key, port, replace-peers, one peer with endpoint, keepalive and an allowed IP', async (t) => {
  const [payload, ...more] = nl.encodeConfigure('wg0', { privateKey: KEY_A, listenPort: 51820, peers: [{ publicKey: KEY_B, endpoint: '10.0.0.1:51820', keepaliveSeconds: 25, allowedIps: ['100.89.0.7/32'] }] });
  t.equal(more.length, 0, 'one message');
  const allowedIp = nla(0 | NESTED, [...nla(1, le16(2)), ...nla(2, [100, 89, 0, 7]), ...nla(3, [32])]); // FAMILY=AF_INET, IPADDR, CIDR_MASK
  const sockaddrIn = [...le16(2), 0xca, 0x6c, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]; // AF_INET, port 51820 big-endian, address, zero pad
  const peer = nla(0 | NESTED, [
    ...nla(1, Buffer.alloc(32, 0xbb)), // WGPEER_A_PUBLIC_KEY
    ...nla(3, le32(2)), // WGPEER_A_FLAGS = REPLACE_ALLOWEDIPS
    ...nla(4, sockaddrIn), // WGPEER_A_ENDPOINT
    ...nla(5, le16(25)), // WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL
    ...nla(9 | NESTED, allowedIp), // WGPEER_A_ALLOWEDIPS
  ]);
  const expected = [
    ...ifname('wg0'),
    ...nla(3, Buffer.alloc(32, 0xaa)), // WGDEVICE_A_PRIVATE_KEY
    ...nla(6, le16(51820)), // WGDEVICE_A_LISTEN_PORT
    ...nla(5, le32(1)), // WGDEVICE_A_FLAGS = REPLACE_PEERS
    ...nla(8 | NESTED, peer), // WGDEVICE_A_PEERS
  ];
  t.same([...payload!], expected);
});

t.test('removing a peer sets WGPEER_F_REMOVE_ME; an IPv6 allowed IP is AF_INET6 with 16 bytes', async (t) => {
  t.same([...nl.encodeRemovePeer('wg0', KEY_B)], [...ifname('wg0'), ...nla(8 | NESTED, nla(0 | NESTED, [...nla(1, Buffer.alloc(32, 0xbb)), ...nla(3, le32(1))]))]);
  const v6 = nl.encodeSetPeer('wg0', { publicKey: KEY_B, allowedIps: ['fd00::7/128'] });
  const addr = [0xfd, 0, ...Array(13).fill(0), 7];
  const allowed = nla(9 | NESTED, nla(0 | NESTED, [...nla(1, le16(10)), ...nla(2, addr), ...nla(3, [128])]));
  t.same([...v6], [...ifname('wg0'), ...nla(8 | NESTED, nla(0 | NESTED, [...nla(1, Buffer.alloc(32, 0xbb)), ...nla(3, le32(2)), ...nla(5, le16(0)), ...allowed]))]);
});

t.test('a long peer list goes in several messages; only the first replaces the peers', async (t) => {
  const peers = Array.from({ length: nl.PEERS_PER_MESSAGE + 5 }, () => ({ publicKey: generateKeyPair().publicKey, allowedIps: ['100.89.1.1/32'] }));
  const msgs = nl.encodeConfigure('wg0', { privateKey: KEY_A, listenPort: 1, peers });
  t.equal(msgs.length, 2);
  const flags = (m: Buffer) => nl.parseAttrs(m).filter((a) => a.type === 5).length;
  t.same(msgs.map(flags), [1, 0], 'REPLACE_PEERS only in the first');
  t.same(msgs.map((m) => nl.parseAttrs(nl.parseAttrs(m).find((a) => a.type === 8)!.value).length), [nl.PEERS_PER_MESSAGE, 5]);
});

t.test('GET_DEVICE replies decode, a peer split across two messages included', async (t) => {
  const timespec = Buffer.alloc(16);
  timespec.writeBigInt64LE(1_700_000_000n, 0);
  timespec.writeBigInt64LE(250_000_000n, 8);
  const u64 = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return [...b]; };
  const ip = (a: number[]) => nla(0 | NESTED, [...nla(1, le16(2)), ...nla(2, a), ...nla(3, [32])]);
  const first = Buffer.from([
    ...nla(6, le16(51820)),
    ...nla(8 | NESTED, nla(0 | NESTED, [
      ...nla(1, Buffer.alloc(32, 0xbb)),
      ...nla(4, [...le16(2), 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
      ...nla(6, timespec),
      ...nla(7, u64(1234n)),
      ...nla(8, u64(5678n)),
      ...nla(9 | NESTED, ip([100, 89, 0, 7])),
    ])),
  ]);
  const second = Buffer.from(nla(8 | NESTED, nla(0 | NESTED, [...nla(1, Buffer.alloc(32, 0xbb)), ...nla(9 | NESTED, ip([100, 89, 0, 8]))])));
  t.same(nl.decodeGet([first, second]), {
    listenPort: 51820,
    peers: [{ publicKey: KEY_B, endpoint: '127.0.0.1:8080', lastHandshakeAt: 1_700_000_000_250, rxBytes: 1234, txBytes: 5678, allowedIps: ['100.89.0.7/32', '100.89.0.8/32'] }],
  });
  t.throws(() => nl.parseAttrs(Buffer.from([9, 0, 1, 0])), /malformed netlink attribute/, 'a length past the end is refused');
});

t.test('UAPI: set and get, as wireguard-go reads and writes them', async (t) => {
  const hexA = 'aa'.repeat(32);
  const hexB = 'bb'.repeat(32);
  t.equal(uapi.encodeConfigure({ privateKey: KEY_A, listenPort: 51820, peers: [{ publicKey: KEY_B, allowedIps: ['100.89.0.7/32'], endpoint: '10.0.0.1:51820', keepaliveSeconds: 25 }] }),
    `set=1\nprivate_key=${hexA}\nlisten_port=51820\nreplace_peers=true\npublic_key=${hexB}\nendpoint=10.0.0.1:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=100.89.0.7/32\n\n`);
  t.equal(uapi.encodeRemovePeer(KEY_B), `set=1\npublic_key=${hexB}\nremove=true\n\n`);
  t.equal(uapi.answerErrno('errno=0\n'), undefined, 'incomplete without the blank line');
  t.equal(uapi.answerErrno('errno=-22\n\n'), -22);
  t.throws(() => uapi.answerErrno('nonsense\n\n'), /malformed UAPI answer/);
  const got = uapi.decodeGet(`private_key=${hexA}\nlisten_port=51820\npublic_key=${hexB}\nendpoint=127.0.0.1:9\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5000000\ntx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=0\nallowed_ip=100.89.0.7/32\nprotocol_version=1\nerrno=0\n\n`);
  t.same(got, { listenPort: 51820, peers: [{ publicKey: KEY_B, endpoint: '127.0.0.1:9', lastHandshakeAt: 1_700_000_000_005, rxBytes: 20, txBytes: 10, allowedIps: ['100.89.0.7/32'] }] });
  t.same(uapi.decodeGet('listen_port=1\nerrno=0\n\n').peers, [], 'no peers');
});

t.test('keys: made and derived as wg does; malformed ones are told apart', async (t) => {
  // RFC 7748 section 6.1 test vector (Alice): private scalar -> public key.
  const alicePriv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64');
  t.equal(Buffer.from(publicKeyOf(alicePriv), 'base64').toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  const k = generateKeyPair();
  t.equal(publicKeyOf(k.privateKey), k.publicKey);
  t.ok(isWireGuardKey(k.publicKey));
  for (const bad of ['', 'abc', Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64'), `${k.publicKey.slice(0, 42)}B=`, 42, null]) t.notOk(isWireGuardKey(bad), `refused: ${JSON.stringify(bad)}`);
});
