// The cert-issuer asks the CA to check a DNS-01 challenge only once every live node's DNS
// serves the record, waiting a bounded time (logic only; the DNS test checks real nodes).
import t from 'tap';
import { waitServedEverywhere } from '../../supervisors/challenge-propagation.ts';
import { SimulatedClock } from '../harness/clock.ts';

t.test('it waits until every live node serves the record', async (t) => {
  const clock = new SimulatedClock();
  const asked: string[] = [];
  const left = await waitServedEverywhere({
    nodes: () => ['node-1', 'node-2', 'node-3'],
    serves: async (n) => (asked.push(n), n !== 'node-2' || clock.t >= 200),
    clock,
    timeoutMs: 5000,
    everyMs: 50,
  });
  t.same(left, [], 'all serve it in the end');
  t.equal(clock.t, 200, 'it returned as soon as the lagging node served it');
  t.equal(asked.filter((n) => n === 'node-1').length, 1, 'a node that served it is not asked again');
});

t.test('after the bound it gives up, naming the nodes that do not serve it; one that cannot be asked counts as not serving', async (t) => {
  const clock = new SimulatedClock();
  const left = await waitServedEverywhere({
    nodes: () => ['node-1', 'node-2', 'node-3'],
    serves: async (n) => {
      if (n === 'node-3') throw new Error('connect ECONNREFUSED');
      return n === 'node-1';
    },
    clock,
    timeoutMs: 1000,
    everyMs: 50,
  });
  t.same(left, ['node-2', 'node-3']);
  t.equal(clock.t, 1000, 'it waited the whole bound');
});

t.test('a node that leaves the cluster meanwhile is no longer waited for', async (t) => {
  const clock = new SimulatedClock();
  const left = await waitServedEverywhere({
    nodes: () => (clock.t < 300 ? ['node-1', 'node-2'] : ['node-1']),
    serves: async (n) => n === 'node-1',
    clock,
    timeoutMs: 5000,
    everyMs: 100,
  });
  t.same(left, []);
  t.equal(clock.t, 300);
});
