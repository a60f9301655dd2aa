// Admission of connector registrations: at most a bound in progress, and a smaller one per site;
// none while the event loop lags; a slot is freed once, however the registration ends. And the
// lag it reads is real: a blocked event loop shows in LoopLag.
import t from 'tap';
import { Admission, MAX_REGISTERING, MAX_REGISTERING_PER_SITE, SHED_LAG_MS, STANDBY_AFTER_PROMOTION_MS, STANDBY_SHED_LAG_MS } from '../../gateways/connector/admission.ts';
import { LoopLag } from '../../core/loop-lag.ts';

t.test('at most the bound of registrations in progress; a slot is freed exactly once', async (t) => {
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => 0, max: 2, onRefused: (r) => refused.push(r) });
  const first = a.enter('site-a');
  const second = a.enter('site-b');
  t.type(first, 'function', 'one admitted');
  t.type(second, 'function', 'two admitted');
  t.equal(a.enter('site-c'), 'busy', 'the third is refused');
  (first as () => void)();
  (first as () => void)(); // the socket closed after the registration had already freed its slot
  t.equal(a.inProgress, 1, 'freed once, not twice');
  t.type(a.enter('site-c'), 'function', 'a slot again');
  t.same(refused, ['busy'], 'the refusal is told, with its reason');
  t.type(new Admission({ lagMs: () => 0 }).enter('site-a'), 'function', `default bound ${MAX_REGISTERING}`);
});

t.test('one site holds at most its share of the slots; freeing one gives it back', async (t) => {
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => 0, onRefused: (r) => refused.push(r) });
  const held = Array.from({ length: MAX_REGISTERING_PER_SITE }, () => a.enter('hog'));
  t.ok(held.every((h) => typeof h === 'function'), `${MAX_REGISTERING_PER_SITE} of one site admitted`);
  t.equal(a.enter('hog'), 'site-busy', 'one more of the same site is refused');
  t.equal(a.enter('hog', 'standby'), 'site-busy', 'as a standby too');
  t.type(a.enter('neighbour'), 'function', 'another site is still taken');
  t.equal(a.inProgress, MAX_REGISTERING_PER_SITE + 1);
  (held[0] as () => void)();
  (held[0] as () => void)();
  t.type(a.enter('hog'), 'function', 'a freed slot takes the site again');
  t.equal(a.enter('hog'), 'site-busy', 'and no more than that one');
  t.same(refused, ['site-busy', 'site-busy', 'site-busy']);
  // A full node still names a site over its share as that: the site's doing, not the node's load.
  const full = new Admission({ lagMs: () => 0, max: 1, maxPerSite: 1 });
  full.enter('hog');
  t.equal(full.enter('hog'), 'site-busy');
  t.equal(full.enter('other'), 'busy');
});

t.test('no new registration while the event loop lags', async (t) => {
  let lag = SHED_LAG_MS + 1;
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => lag, onRefused: (r) => refused.push(r) });
  t.equal(a.enter('site-a'), 'lagging', 'refused while lagging');
  lag = 50;
  t.type(a.enter('site-a'), 'function', 'admitted once the loop keeps time again');
  t.same(refused, ['lagging']);
});

// A standby is a second path of a site online elsewhere: a node absorbing a dead node's
// promotions (its loop running late) takes the primaries and defers the standbys.
t.test('a standby is deferred sooner than a primary', async (t) => {
  let lag = STANDBY_SHED_LAG_MS + 1;
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => lag, onRefused: (r) => refused.push(r) });
  t.ok(STANDBY_SHED_LAG_MS < SHED_LAG_MS);
  t.equal(a.enter('site-a', 'standby'), 'standby-deferred', 'a standby waits');
  t.type(a.enter('site-b', 'primary'), 'function', 'a primary is taken at the same lag');
  t.type(a.enter('site-c'), 'function', 'as is a connection that does not say (an older connector)');
  lag = STANDBY_SHED_LAG_MS - 1;
  t.type(a.enter('site-a', 'standby'), 'function', 'a standby is taken once the loop keeps time');
  lag = SHED_LAG_MS + 1;
  t.equal(a.enter('site-d', 'primary'), 'lagging');
  t.same(refused, ['standby-deferred', 'lagging']);
});

t.test('a standby waits while the node takes promotions', async (t) => {
  let now = 1_000_000;
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => 0, onRefused: (r) => refused.push(r), now: () => now });
  t.type(a.enter('site-a', 'standby'), 'function', 'no promotion yet: taken');
  a.promoted();
  now += STANDBY_AFTER_PROMOTION_MS - 1;
  t.equal(a.enter('site-b', 'standby'), 'standby-deferred', 'a standby within the quiet period after a promotion waits');
  t.type(a.enter('site-c', 'primary'), 'function', 'a primary does not');
  now += 1;
  t.type(a.enter('site-b', 'standby'), 'function', 'taken once promotions are quiet');
  t.same(refused, ['standby-deferred']);
});

// In a 10,000-site storm the slots were taken by standbys registering at a saturated node's
// pace: a site coming back by registering anew must still find room.
t.test('standbys hold at most half the slots; a primary finds the rest; refusals name their role', async (t) => {
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => 0, max: 4, onRefused: (reason, role) => refused.push(`${reason} ${role}`) });
  const standbys = ['s1', 's2'].map((id) => a.enter(id, 'standby'));
  t.ok(standbys.every((r) => typeof r === 'function'), 'two standbys admitted');
  t.equal(a.enter('s3', 'standby'), 'busy', 'a third standby is refused: half the slots are theirs');
  t.type(a.enter('p1', 'primary'), 'function', 'a primary is admitted beside them');
  t.type(a.enter('p2', 'primary'), 'function', 'and another, to the node-wide bound');
  t.equal(a.enter('p3', 'primary'), 'busy', 'the node-wide bound holds');
  (standbys[0] as () => void)();
  t.type(a.enter('s3', 'standby'), 'function', "a standby's freed slot takes a standby again");
  t.same(refused, ['busy standby', 'busy primary']);
  // While promotions run, a standby is told it is deferred, full node or not: that is why it waits.
  let now = 1_000_000;
  const full = new Admission({ lagMs: () => 0, max: 1, now: () => now });
  full.enter('p', 'primary');
  full.promoted();
  t.equal(full.enter('s', 'standby'), 'standby-deferred');
  now += STANDBY_AFTER_PROMOTION_MS;
  t.equal(full.enter('s', 'standby'), 'busy');
});

t.test('LoopLag sees a blocked event loop, and forgets it after its window', async (t) => {
  const lag = new LoopLag(20, 300).start();
  t.teardown(() => lag.stop());
  await new Promise((r) => setTimeout(r, 100));
  t.ok(lag.worstMs() < 200, `calm: ${lag.worstMs().toFixed(0)} ms`);
  const until = Date.now() + 400;
  while (Date.now() < until); // the loop held for 400 ms
  await new Promise((r) => setTimeout(r, 60));
  t.ok(lag.worstMs() >= 300, `blocked: ${lag.worstMs().toFixed(0)} ms`);
  await new Promise((r) => setTimeout(r, 500));
  t.ok(lag.worstMs() < 200, `forgotten after the window: ${lag.worstMs().toFixed(0)} ms`);
});
