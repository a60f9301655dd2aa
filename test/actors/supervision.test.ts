import t from 'tap';
import { ActorSystem, type Behavior, type InspectionEvent } from '../../actors/runtime.ts';
import { createLogger } from '../../core/log.ts';
import { RestartBudget } from '../../supervisors/restart-policy.ts';
import { ClusterError } from '../../core/errors.ts';
import { SimulatedClock } from '../harness/clock.ts';
import { until } from '../harness/until.ts';

const logger = createLogger({ level: 'silent' });

type Msg = { type: 'crash' } | { type: 'add'; n: number } | { type: 'get' };

function counter(inits: { n: number }): Behavior<{ total: number }, Msg> {
  return {
    init: async () => {
      inits.n++;
      return { total: 0 };
    },
    receive: (state, msg, ctx) => {
      if (msg.type === 'crash') throw new Error('boom');
      if (msg.type === 'add') return { total: state.total + msg.n };
      ctx.reply(state.total);
      return state;
    },
  };
}

t.test('a crashing actor restarts within its budget with growing backoff, then escalates', async (t) => {
  const escalated: string[] = [];
  // The backoff sleeps on this clock: time passes only as the supervisor waits.
  const clock = new SimulatedClock();
  const system = new ActorSystem({ logger, clock, restart: { maxRestarts: 3, windowMs: 60_000, backoffMinMs: 50, backoffMaxMs: 1000, jitter: 0 }, onEscalate: (k, id) => escalated.push(`${k}/${id}`) });
  t.teardown(() => system.shutdown());
  const events: InspectionEvent[] = [];
  system.events.on('event', (e: InspectionEvent) => events.push(e));
  const inits = { n: 0 };
  const actor = system.spawn('counter', 'c1', counter(inits));
  t.equal(await actor.ask({ type: 'get' }, 1000), 0);
  const waited: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = clock.now();
    await t.rejects(actor.ask({ type: 'crash' }, 1000), { message: 'boom' }, 'the asker gets the failure');
    actor.send({ type: 'add', n: 1 }); // queued during the backoff, handled after the restart
    t.equal(await actor.ask({ type: 'get' }, 3000), 1, 'state was reset, and the queued message was kept');
    waited.push(clock.now() - t0);
  }
  t.same(events.filter((e) => e.type === 'restarted').map((e) => (e as any).delayMs), [50, 100, 200], 'backoff doubles');
  t.same(waited, [50, 100, 200], 'each restart waited its backoff before the actor ran again');
  t.equal(inits.n, 4, 'init ran again after each restart');
  await t.rejects(actor.ask({ type: 'crash' }, 1000));
  await until(() => escalated.length > 0, 2000, 'escalation');
  t.same(escalated, ['counter/c1'], 'the fourth crash escalates');
  t.equal(system.get('counter', 'c1'), undefined, 'and the actor is gone');
  t.ok(events.some((e) => e.type === 'escalated'));
});

t.test('crashes while PostgreSQL or Valkey is away back off but never escalate; they do not spend the budget', async (t) => {
  const b = new RestartBudget({ maxRestarts: 2, windowMs: 1000, backoffMinMs: 100, backoffMaxMs: 400, jitter: 0 });
  const delays = [0, 10, 20, 30, 40].map((at) => b.onFailure(at, true));
  t.same(delays.map((d) => d.action), ['restart', 'restart', 'restart', 'restart', 'restart'], 'no escalation however many');
  t.same(delays.map((d) => (d as { delayMs: number }).delayMs), [100, 200, 400, 400, 400], 'the backoff grows to its cap');
  t.same(b.onFailure(50), { action: 'restart', delayMs: 100, attempt: 1 }, 'a crash of its own starts the budget from zero');
  t.same(b.onFailure(60), { action: 'restart', delayMs: 200, attempt: 2 });
  t.same(b.onFailure(70), { action: 'escalate', failures: 3 }, 'and escalates as before');
});

t.test('an actor failing on an unreachable Valkey is restarted, never given up', async (t) => {
  const escalated: string[] = [];
  const clock = new SimulatedClock();
  const system = new ActorSystem({ logger, clock, restart: { maxRestarts: 2, windowMs: 60_000, backoffMinMs: 10, backoffMaxMs: 20, jitter: 0 }, onEscalate: (k, id) => escalated.push(`${k}/${id}`) });
  t.teardown(() => system.shutdown());
  let restarts = 0;
  system.events.on('event', (e: InspectionEvent) => e.type === 'restarted' && restarts++);
  let down = true;
  const behavior: Behavior<{ total: number }, { type: 'get' }> = {
    async init() {
      if (down) throw new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', 'valkey unavailable', {});
      return { total: 0 };
    },
    async receive(state, _msg, ctx) {
      ctx.reply(state.total);
      return state;
    },
  };
  const actor = system.spawn('store', 'v1', behavior);
  await until(() => (clock.advance(20), restarts >= 6), 5000, 'six restarts (three times the budget)');
  t.same(escalated, [], 'not given up');
  down = false;
  t.equal(await until(() => (clock.advance(20), actor.ask({ type: 'get' }, 100).catch(() => undefined)), 5000, 'the actor back'), 0, 'it runs again once Valkey answers');
});

t.test('the restart budget forgets crashes outside its window and caps the backoff', async (t) => {
  const b = new RestartBudget({ maxRestarts: 2, windowMs: 1000, backoffMinMs: 100, backoffMaxMs: 150, jitter: 0 });
  t.same(b.onFailure(0), { action: 'restart', delayMs: 100, attempt: 1 });
  t.same(b.onFailure(10), { action: 'restart', delayMs: 150, attempt: 2 }, 'capped');
  t.same(b.onFailure(20), { action: 'escalate', failures: 3 });
  t.same(b.onFailure(5000), { action: 'restart', delayMs: 100, attempt: 1 }, 'old crashes left the window');
  const jittered = new RestartBudget({ backoffMinMs: 1000, jitter: 0.2 }, () => 1);
  t.equal((jittered.onFailure(0) as { delayMs: number }).delayMs, 1200, 'jitter spreads the delay');
});

t.test('stopping an actor drains its mailbox, then refuses new messages with NOT_HERE', async (t) => {
  const system = new ActorSystem({ logger });
  t.teardown(() => system.shutdown());
  const slow: Behavior<number, { type: 'work' }> = {
    init: () => 0,
    receive: async (s, _m, ctx) => {
      await new Promise((r) => setTimeout(r, 30));
      ctx.reply(s + 1);
      return s + 1;
    },
  };
  const actor = system.spawn('slow', 's', slow);
  const pending = [1, 2, 3].map(() => actor.ask({ type: 'work' }, 2000));
  const stopping = actor.stop(2000);
  t.throws(() => actor.send({ type: 'work' }), { code: 'CLUSTER_ERR_ACTOR_NOT_HERE' });
  t.same(await Promise.all(pending), [1, 2, 3], 'messages already queued were handled');
  await stopping;
  t.equal(system.get('slow', 's'), undefined);
});

// nact names an unnamed actor with a random 32-bit number and refuses a name in use: among
// thousands of actors a spawn drew a taken one now and then. Math.random pinned makes every
// draw collide; each actor still spawns, and answers.
t.test('actors never collide on nact\'s names, however its random draws fall', async (t) => {
  const system = new ActorSystem({ logger });
  t.teardown(() => system.shutdown());
  const random = Math.random;
  Math.random = () => 0.5;
  t.teardown(() => void (Math.random = random));
  const inits = { n: 0 };
  const actors = [1, 2, 3].map((i) => system.spawn('counter', `c${i}`, counter(inits)));
  Math.random = random;
  for (const [i, a] of actors.entries()) {
    a.send({ type: 'add', n: i + 1 });
    t.equal(await a.ask({ type: 'get' }, 1000), i + 1, `actor ${i + 1} runs and answers`);
  }
});
