// The kernel relay of raw TCP streams (core/native/splice_relay.c): real loopback sockets,
// the bytes compared end to end, half-closes and resets passed on.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { loadSpliceRelay, relayStreams, spliceSockets } from '../../core/splice-relay.ts';

const native = loadSpliceRelay();
if ('error' in native) throw new Error(`the splice module is not built (npm run native:build): ${native.error}`);

/** A connected pair of loopback sockets: [the dialled end, the accepted end]. */
async function pair(server: Server): Promise<[Socket, Socket]> {
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const dialled = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(dialled, 'connect');
  const [other] = await accepted;
  return [dialled, other];
}

/** Everything `s` sends until it ends; `s` stays open for writing (a for-await would destroy it). */
function readAll(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return once(s, 'end').then(() => Buffer.concat(chunks));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function fixture(t: Test) {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  // client <-> relayA ... relayB <-> target: the relay joins relayA and relayB.
  const [client, relayA] = await pair(server);
  const [relayB, target] = await pair(server);
  t.teardown(() => [client, relayA, relayB, target].forEach((s) => s.destroy()));
  return { client, relayA, relayB, target };
}

t.test('moves bulk both ways intact, bytes read before the relay first, and passes half-closes on', async (t) => {
  const { client, relayA, relayB, target } = await fixture(t);
  relayA.pause();
  relayB.pause();
  // Sent before the relay starts: Node has read these already.
  client.write('early from the client;');
  target.write('early from the target;');
  await new Promise((r) => setTimeout(r, 50));
  const up = randomBytes(24 * 1024 * 1024);
  const down = randomBytes(8 * 1024 * 1024);
  const relay = spliceSockets(relayA, relayB);
  t.ok(relay, 'two plain TCP sockets are spliced');
  t.ok(relayA.destroyed && relayB.destroyed, "Node's own sockets are let go at once (the relay holds the connections)");
  const atTarget = readAll(target);
  const atClient = readAll(client);
  client.end(up); // the client is done sending; the target still answers
  const gotUp = await atTarget;
  t.equal(sha(gotUp), sha(Buffer.concat([Buffer.from('early from the client;'), up])), 'the target got every byte the client sent, in order, then its end');
  target.end(down);
  const gotDown = await atClient;
  t.equal(sha(gotDown), sha(Buffer.concat([Buffer.from('early from the target;'), down])), 'the client got the answer after its own half-close');
  const counts = await relay!.done;
  t.same(counts, { aToB: up.length + 22, bToA: down.length + 22 }, 'the relay counts what it moved');
});

t.test('a reset on one side closes the other; destroy() ends a relay early', async (t) => {
  const { client, relayA, relayB, target } = await fixture(t);
  const relay = spliceSockets(relayA, relayB)!;
  client.on('error', () => {});
  const targetError = new Promise((r) => target.once('error', r));
  client.resetAndDestroy();
  await t.rejects(relay.done, /errno/, 'the relay ends with the error');
  t.match(await targetError, { code: 'ECONNRESET' }, 'the target is reset too: a cut-off stream does not look complete');

  const second = await fixture(t);
  const r2 = spliceSockets(second.relayA, second.relayB)!;
  r2.destroy();
  await t.rejects(r2.done, /errno 125/, 'destroy() ends it as cancelled');
  await Promise.all([once(second.client, 'end'), once(second.target, 'end')]);
  t.pass('both ends see the connection end');
});

t.test('anything but two plain sockets is left alone and piped in JavaScript', async (t) => {
  const { client, relayA, relayB, target } = await fixture(t);
  const { PassThrough } = await import('node:stream');
  const notASocket = new PassThrough();
  t.equal(spliceSockets(relayA, notASocket as unknown as Socket), undefined, 'a stream that is no socket: not spliced');
  t.notOk(relayA.destroyed, 'and the socket is untouched');
  t.equal(relayStreams(relayA, relayB), 'splice', 'two sockets: spliced');
  client.end('through');
  t.equal((await readAll(target)).toString(), 'through', 'the bytes went through');
});
