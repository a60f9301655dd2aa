// Actor messages are typed per kind and checked where they are delivered: a message of the
// wrong shape is refused with a coded error and changes nothing, and an actor that is sent
// an unknown type keeps its state instead of crashing.
import t from 'tap';
import { ActorSystem, unknownMessage, type Behavior } from '../../actors/runtime.ts';
import { createLogger } from '../../core/log.ts';
import { remoteError } from '../../gateways/peer/link.ts';
import { ACTOR_MESSAGES } from '../../protocol/actor-messages.ts';
import { askVia, startCluster } from '../harness/cluster.ts';

const logger = createLogger({ level: 'silent' });

type Msg = { type: 'add'; n: number } | { type: 'get' };
const counter: Behavior<{ total: number }, Msg> = {
  init: () => ({ total: 0 }),
  receive: (state, msg, ctx) => {
    switch (msg.type) {
      case 'add':
        return { total: state.total + msg.n };
      case 'get':
        ctx.reply(state.total);
        return state;
      default:
        return unknownMessage(msg);
    }
  },
};

t.test('an unknown message type is refused with a code, and the actor keeps its state and keeps running', async (t) => {
  const system = new ActorSystem({ logger });
  t.teardown(() => system.shutdown());
  const failures: string[] = [];
  system.events.on('event', (e) => e.type === 'failed' && failures.push(e.error));
  const actor = system.spawn('counter', 'c', counter);
  actor.send({ type: 'add', n: 2 });
  await t.rejects(actor.ask({ type: 'launch' } as never, 1000), { code: 'CLUSTER_ERR_ACTOR_BAD_MESSAGE', fields: { kind: 'counter', id: 'c' } });
  t.equal(await actor.ask({ type: 'get' }, 1000), 2, 'the state before the bad message is intact');
  actor.send({ type: 'add', n: 1 });
  t.equal(await actor.ask({ type: 'get' }, 1000), 3, 'and the next messages are handled');
  t.same(failures, [], 'no crash was recorded, so no restart happened');
});

t.test('each kind\'s schema accepts its messages and refuses others', async (t) => {
  t.ok(ACTOR_MESSAGES['dns-zone'].safeParse({ type: 'acme-set', name: '_acme-challenge.a.example', value: 'v' }).success);
  t.notOk(ACTOR_MESSAGES['dns-zone'].safeParse({ type: 'acme-set', name: '' }).success, 'a challenge without a value');
  t.notOk(ACTOR_MESSAGES.resource.safeParse({ type: 'acme-set', name: 'x', value: 'y' }).success, 'another kind\'s message');
  const session = { id: 's', send() {}, close() {} };
  t.ok(ACTOR_MESSAGES.site.safeParse({ type: 'attach', session, generation: 1 }).success, 'a local session attaches');
  t.notOk(ACTOR_MESSAGES.site.safeParse(JSON.parse(JSON.stringify({ type: 'attach', session, generation: 1 }))).success, 'a session that crossed a process (no methods) does not');
  t.notOk(ACTOR_MESSAGES['cert-issuer'].safeParse({ type: 'obtain' }).success, 'obtain needs a hostname');
});

t.test('an error code from a newer node is coded, not a TypeError; known codes keep their fields', async (t) => {
  const unknown = remoteError('CLUSTER_ERR_FROM_THE_FUTURE', 'something new', {});
  t.match(unknown, { code: 'CLUSTER_ERR_PEER_UNKNOWN_ERROR', status: 502, fields: { remoteCode: 'CLUSTER_ERR_FROM_THE_FUTURE' } });
  t.match(remoteError(undefined, undefined, undefined), { code: 'CLUSTER_ERR_PEER_UNKNOWN_ERROR', fields: { remoteCode: '' } });
  const known = remoteError('CLUSTER_ERR_ACTOR_ASK_TIMEOUT', 'slow', { kind: 'probe', id: 'p', timeoutMs: 5 });
  t.match(known, { code: 'CLUSTER_ERR_ACTOR_ASK_TIMEOUT', status: 504, fields: { kind: 'probe', id: 'p', timeoutMs: 5 } });
});

t.test('a message of the wrong shape sent into the cluster is refused before it travels', async (t) => {
  const cluster = await startCluster(t, 1);
  const node = cluster.nodes[0]!;
  t.match(await askVia(node, 'probe', 'p1', { type: 'record' }), { status: 400, body: { code: 'CLUSTER_ERR_ACTOR_BAD_MESSAGE', kind: 'probe' } }, 'a record without its id');
  t.match(await askVia(node, 'probe', 'p1', { type: 'launch' }), { status: 400, body: { code: 'CLUSTER_ERR_ACTOR_BAD_MESSAGE' } }, 'a type the kind does not have');
  t.match(await askVia(node, 'rocket', 'p1', { type: 'ping' }), { status: 400, body: { code: 'CLUSTER_ERR_ACTOR_UNKNOWN_KIND' } }, 'a kind that does not exist');
});
