// What a node's DNS leaves out, rule by rule (supervisors/dns-exclusion.ts): the partitions
// `cluster chaos --modes cut-peers,cut-valkey` showed each of these mattering.
import t from 'tap';
import type { MemberRecord } from '../../protocol/channels.ts';
import { dnsExclusions } from '../../supervisors/dns-exclusion.ts';

const member = (id: string, ip: string): MemberRecord => ({ id, incarnation: '1', admin: `${ip}:8080`, peer: `${ip}:7946`, addresses: [ip], startedAt: 0 });
const members = [member('a', '10.0.0.1'), member('b', '10.0.0.2'), member('c', '10.0.0.3')];
const view = (o: { suspected?: string[]; healthy?: boolean; renewing?: string[]; of?: MemberRecord[] }) =>
  dnsExclusions({ self: 'a', members: o.of ?? members, suspected: new Set(o.suspected ?? []), healthy: o.healthy ?? true, renewing: (id) => (o.renewing ?? []).includes(id) });

t.test('a suspected peer is left out; the rest answer for the names it served', async (t) => {
  const r = view({ suspected: ['b'], renewing: ['b', 'c'] });
  t.same([...r.excluded], ['10.0.0.2']);
  t.same(r.answering, ['10.0.0.1', '10.0.0.3']);
});

t.test('nothing suspected, lease held: nothing left out', async (t) => {
  t.same([...view({ renewing: ['b', 'c'] }).excluded], []);
});

t.test('suspecting every peer while they still renew their leases: this node is the one cut off, so it keeps naming them', async (t) => {
  const r = view({ suspected: ['b', 'c'], renewing: ['b', 'c'] });
  t.same([...r.excluded], [], 'no peer left out');
  const one = view({ suspected: ['b', 'c'], renewing: ['c'] });
  t.same([...one.excluded], ['10.0.0.2'], 'a peer that stopped renewing (really frozen) is still left out');
});

t.test('suspecting every peer that stopped renewing too: they are left out (two nodes frozen at once)', async (t) => {
  const r = view({ suspected: ['b', 'c'], renewing: [] });
  t.same([...r.excluded].sort(), ['10.0.0.2', '10.0.0.3']);
  t.same(r.answering, ['10.0.0.1']);
});

t.test('with a single peer the renewing check is not used: two nodes cannot tell which side is cut', async (t) => {
  const r = view({ of: members.slice(0, 2), suspected: ['b'], renewing: ['b'] });
  t.same([...r.excluded], ['10.0.0.2']);
});

t.test('fenced: this node leaves itself out, the peers it last knew answer', async (t) => {
  const r = view({ healthy: false, renewing: ['b', 'c'] });
  t.same([...r.excluded], ['10.0.0.1']);
  t.same(r.answering, ['10.0.0.2', '10.0.0.3']);
});
