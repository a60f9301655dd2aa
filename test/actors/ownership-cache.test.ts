// Every node caches actors' owners, fed by the 'ownership' announcements. When a node dies
// only its own entries may go: the whole cache cleared sent every delivery, to actors that
// never moved, to Valkey again during the reconnect storm. A cached owner that is no longer
// live is read again, so a successor's claim is found even if its announcement was missed.
import { EventEmitter } from 'node:events';
import t from 'tap';
import type { DatabasePool } from '../../persistence/db.ts';
import type { Valkey } from '../../persistence/valkey.ts';
import type { OwnershipChange } from '../../protocol/channels.ts';
import type { Membership, MembershipEvent } from '../../supervisors/membership.ts';
import { OwnershipRegistry } from '../../supervisors/ownership.ts';

function setup() {
  const stored = new Map<string, string>();
  const reads: string[] = [];
  let announce: (m: OwnershipChange) => void = () => {};
  const valkey = {
    keys: { owner: (kind: string, id: string) => `owner:${kind}:${id}` },
    subscribe: async (_name: string, handler: (m: OwnershipChange) => void) => ((announce = handler), async () => {}),
    onResubscribed: () => () => {},
    call: async <T>(f: (c: { get(key: string): Promise<string | null> }) => Promise<T>) =>
      f({ get: async (key) => (reads.push(key), stored.get(key) ?? null) }),
  };
  const members = new Map([
    ['a', { id: 'a', incarnation: '1' }],
    ['b', { id: 'b', incarnation: '1' }],
    ['c', { id: 'c', incarnation: '1' }],
  ]);
  const membership = Object.assign(new EventEmitter(), { nodeId: 'a', incarnation: '1', member: (id: string) => members.get(id) });
  const ownership = new OwnershipRegistry({ valkey: valkey as unknown as Valkey, db: {} as DatabasePool, membership: membership as unknown as Membership });
  const claimed = (node: string, ids: string[], epoch = 1) => {
    for (const id of ids) stored.set(`owner:site:${id}`, JSON.stringify({ node, inc: '1', epoch: String(epoch) }));
    announce({ type: 'claimed', kind: 'site', ids, node, incarnation: '1', epochs: ids.map(() => epoch) });
  };
  const dies = (id: string) => {
    const member = members.get(id)!;
    members.delete(id);
    membership.emit('change', { type: 'dead', member, reason: 'lease' } as MembershipEvent);
  };
  /** Gone from the membership view, its 'dead' event not (yet) heard. */
  const vanishes = (id: string) => members.delete(id);
  return { ownership, reads, claimed, dies, vanishes, stored };
}

t.test('a node dies: owners on the others stay cached, its own are read again', async (t) => {
  const { ownership, reads, claimed, dies } = setup();
  await ownership.start();
  claimed('a', ['s1', 's2']);
  claimed('b', ['s3']);
  claimed('c', ['s4']);
  t.same((await ownership.ownerOf('site', 's1'))?.node, 'a');
  t.same(reads, [], 'announced owners come from the cache');
  dies('c');
  t.same((await ownership.ownerOf('site', 's1'))?.node, 'a');
  t.same((await ownership.ownerOf('site', 's3'))?.node, 'b');
  t.same(reads, [], 'owners on live nodes are still cached after c died');
  t.equal(await ownership.ownerOf('site', 's4'), undefined, 'an actor of the dead node has no live owner');
  t.same(reads, ['owner:site:s4'], 'and its entry is read again');
});

t.test('a successor claimed while its announcement was missed: found at the next read', async (t) => {
  const { ownership, reads, claimed, vanishes, stored } = setup();
  await ownership.start();
  claimed('c', ['s5']);
  t.same((await ownership.ownerOf('site', 's5'))?.node, 'c', 'while c is live its cached entry stands');
  t.same(reads, []);
  // c leaves the view before its 'dead' event is heard, and b claims s5 unannounced.
  vanishes('c');
  stored.set('owner:site:s5', JSON.stringify({ node: 'b', inc: '1', epoch: '2' }));
  t.same(await ownership.ownerOf('site', 's5'), { node: 'b', incarnation: '1', epoch: 2 }, 'the dead owner is not kept: b is read');
  t.same(reads, ['owner:site:s5']);
  t.same((await ownership.ownerOf('site', 's5'))?.node, 'b');
  t.same(reads, ['owner:site:s5'], 'and cached');
});
