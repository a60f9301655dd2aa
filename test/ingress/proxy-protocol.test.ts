// PROXY v2 headers carry a forwarded client's address between nodes: every address form
// survives the round trip, and what is not a header is refused.
import t from 'tap';
import { decodeProxyV2, encodeProxyV2 } from '../../gateways/ingress/proxy-protocol.ts';

const roundTrip = (source: string, destination: string) => {
  const header = encodeProxyV2({ source: { address: source, port: 40000 }, destination: { address: destination, port: 443 } });
  const out = decodeProxyV2(Buffer.concat([header, Buffer.from('payload')]));
  if ('error' in out) throw new Error(out.error);
  return { ...out.addresses, length: out.length, headerLength: header.length };
};

t.test('IPv4 and IPv6 addresses round-trip with their ports, and the payload after the header is untouched', async (t) => {
  t.match(roundTrip('203.0.113.7', '198.51.100.1'), { source: { address: '203.0.113.7', port: 40000 }, destination: { address: '198.51.100.1', port: 443 }, length: 28 });
  t.match(roundTrip('2001:db8::7', '2001:db8:0:0:1::1'), { source: { address: '2001:db8::7' }, destination: { address: '2001:db8::1:0:0:1' }, length: 52 });
  const r = roundTrip('::1', 'fe80::1');
  t.equal(r.length, r.headerLength, 'the header length is what was written');
});

t.test('IPv6 addresses that end in a dotted quad are encoded right (they were mangled)', async (t) => {
  t.match(roundTrip('64:ff9b::203.0.113.7', '2001:db8::1'), { source: { address: '64:ff9b::cb00:7107' } }, 'NAT64');
  t.match(roundTrip('::ffff:203.0.113.7', '::ffff:198.51.100.1'), { source: { address: '203.0.113.7' }, destination: { address: '198.51.100.1' }, length: 28 }, 'IPv4-mapped pairs go as IPv4');
  t.match(roundTrip('::ffff:203.0.113.7', '2001:db8::1'), { source: { address: '203.0.113.7' }, destination: { address: '2001:db8::1' }, length: 52 }, 'a mapped client beside an IPv6 listener keeps its address');
  t.match(roundTrip('203.0.113.7', '2001:db8::1'), { source: { address: '203.0.113.7' } }, 'mixed families are not dropped to LOCAL');
});

t.test('an address that is not one gives a LOCAL header; bad headers are refused', async (t) => {
  const local = decodeProxyV2(encodeProxyV2({ source: { address: 'unknown', port: 0 }, destination: { address: '0.0.0.0', port: 0 } }));
  t.same(local, { addresses: null, length: 16 });
  t.same(decodeProxyV2(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), { error: 'not a PROXY v2 header' });
  t.same(decodeProxyV2(Buffer.alloc(8)), { error: 'short header' });
  const header = encodeProxyV2({ source: { address: '1.2.3.4', port: 1 }, destination: { address: '5.6.7.8', port: 2 } });
  t.same(decodeProxyV2(header.subarray(0, 20)), { error: 'truncated header' });
});
