// Admission of connector registrations: at most a bound in progress, none while the event loop
// lags; a slot is freed once, however the registration ends. And the lag it reads is real: a
// blocked event loop shows in LoopLag.
import t from 'tap';
import { Admission, MAX_REGISTERING, SHED_LAG_MS, STANDBY_AFTER_PROMOTION_MS, STANDBY_SHED_LAG_MS } from '../../gateways/connector/admission.ts';
import { LoopLag } from '../../core/loop-lag.ts';

t.test('at most the bound of registrations in progress; a slot is freed exactly once', async (t) => {
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => 0, max: 2, onRefused: (r) => refused.push(r) });
  const first = a.enter();
  const second = a.enter();
  t.ok(first && second, 'two admitted');
  t.equal(a.enter(), undefined, 'the third is refused');
  first!();
  first!(); // the socket closed after the registration had already freed its slot
  t.equal(a.inProgress, 1, 'freed once, not twice');
  t.ok(a.enter(), 'a slot again');
  t.same(refused, ['busy'], 'the refusal is told, with its reason');
  t.equal(new Admission({ lagMs: () => 0 }).enter() !== undefined, true, `default bound ${MAX_REGISTERING}`);
});

t.test('no new registration while the event loop lags', async (t) => {
  let lag = SHED_LAG_MS + 1;
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => lag, onRefused: (r) => refused.push(r) });
  t.equal(a.enter(), undefined, 'refused while lagging');
  lag = 50;
  t.ok(a.enter(), 'admitted once the loop keeps time again');
  t.same(refused, ['lagging']);
});

// A standby is a second path of a site online elsewhere: a node absorbing a dead node's
// promotions (its loop running late) takes the primaries and defers the standbys.
t.test('a standby is deferred sooner than a primary', async (t) => {
  let lag = STANDBY_SHED_LAG_MS + 1;
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => lag, onRefused: (r) => refused.push(r) });
  t.ok(STANDBY_SHED_LAG_MS < SHED_LAG_MS);
  t.equal(a.enter('standby'), undefined, 'a standby waits');
  t.ok(a.enter('primary'), 'a primary is taken at the same lag');
  t.ok(a.enter(), 'as is a connection that does not say (an older connector)');
  lag = STANDBY_SHED_LAG_MS - 1;
  t.ok(a.enter('standby'), 'a standby is taken once the loop keeps time');
  lag = SHED_LAG_MS + 1;
  t.equal(a.enter('primary'), undefined);
  t.same(refused, ['standby-deferred', 'lagging']);
});

t.test('a standby waits while the node takes promotions', async (t) => {
  let now = 1_000_000;
  const refused: string[] = [];
  const a = new Admission({ lagMs: () => 0, onRefused: (r) => refused.push(r), now: () => now });
  t.ok(a.enter('standby'), 'no promotion yet: taken');
  a.promoted();
  now += STANDBY_AFTER_PROMOTION_MS - 1;
  t.equal(a.enter('standby'), undefined, 'a standby within the quiet period after a promotion waits');
  t.ok(a.enter('primary'), 'a primary does not');
  now += 1;
  t.ok(a.enter('standby'), 'taken once promotions are quiet');
  t.same(refused, ['standby-deferred']);
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
