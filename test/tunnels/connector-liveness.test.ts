// The connector's liveness of a control connection: the primary pinged every tick and given up
// after 3 s of silence; a standby pinged every third tick and given 9 s; a promoted standby at
// the primary's pace at once, its silence counted from the promotion; a stall of the
// connector's own process is not the node's silence.
import t from 'tap';
import { Liveness, STANDBY_PING_PACE } from '../../connector/liveness.ts';

/** Ticks every second from `from` to `to` (inclusive) and returns what each asked for. */
function run(l: Liveness, from: number, to: number, primary: boolean) {
  const out: string[] = [];
  for (let s = from; s <= to; s++) out.push(l.tick(s * 1000, primary));
  return out;
}

t.test('the primary is pinged every tick and given up after 3 s without a pong', async (t) => {
  const l = new Liveness(0, true, 3000, 1000);
  t.same(run(l, 1, 3, true), ['ping', 'ping', 'ping']);
  l.heard(2500);
  t.same(run(l, 4, 6, true), ['ping', 'ping', 'silent'], 'silent once 3 s passed since the last pong');
});

t.test('a standby is pinged every third tick and given three times the silence', async (t) => {
  t.equal(STANDBY_PING_PACE, 3);
  const l = new Liveness(0, false, 3000, 1000);
  t.same(run(l, 1, 9, false), ['ping', 'wait', 'wait', 'ping', 'wait', 'wait', 'ping', 'wait', 'wait'], 'a third of the pings');
  t.same(run(l, 10, 10, false), ['silent'], 'given up after 9 s without a pong');
});

t.test('a promoted standby is at the primary\'s pace at once, its silence counted from the promotion', async (t) => {
  const l = new Liveness(0, false, 3000, 1000);
  t.same(run(l, 1, 5, false), ['ping', 'wait', 'wait', 'ping', 'wait'], 'no pong for 5 s: fine for a standby');
  t.same(run(l, 6, 8, true), ['ping', 'ping', 'ping'], 'promoted at 6 s: pinged every tick from then');
  t.same(run(l, 9, 10, true), ['ping', 'silent'], 'given up 3 s after the promotion without a pong, not at once');
});

t.test('a stall of this process is not the node\'s silence: it counts from the late tick', async (t) => {
  const l = new Liveness(0, true, 3000, 1000);
  t.same(run(l, 1, 2, true), ['ping', 'ping']);
  t.equal(l.tick(7000, true), 'ping', 'the tick 5 s late pings instead of leaving the node (no pings went out meanwhile)');
  t.same([l.tick(8000, true), l.tick(9000, true), l.tick(10_000, true)], ['ping', 'ping', 'ping']);
  t.equal(l.tick(11_000, true), 'silent', 'still given up after 3 s of silence while it runs');
});
