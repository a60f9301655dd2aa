// A TCP connection moved to a worker thread (core/socket-handover.ts, the first step of
// docs/data-plane-worker.md): real loopback sockets, the bytes compared end to end.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Worker } from 'node:worker_threads';
import { Duplex } from 'node:stream';
import { handOver, moveOrRelay, type HandedSocket } from '../../core/socket-handover.ts';
import { loadSpliceRelay } from '../../core/splice-relay.ts';

const native = loadSpliceRelay();
if ('error' in native) throw new Error(`the native module is not built (npm run native:build): ${native.error}`);

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A connected pair of loopback sockets: [the dialled end, the accepted end, paused]. */
async function pair(t: Test): Promise<[Socket, Socket]> {
  const server = createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const dialled = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(dialled, 'connect');
  const [other] = await accepted;
  t.teardown(() => {
    dialled.destroy();
    other.destroy();
    server.close();
  });
  return [dialled, other];
}

/** The echoing worker (fixtures/adopting-worker.ts), loaded through tsx's loader registered in it first. */
function adoptingWorker(t: Test, handed: HandedSocket): Worker {
  const fixture = new URL('./fixtures/adopting-worker.ts', import.meta.url).href;
  const worker = new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(fixture)}); })`, { eval: true, workerData: handed });
  worker.on('error', (err: Error) => t.fail(`the worker failed: ${err.message}`));
  t.teardown(() => worker.terminate());
  return worker;
}

t.test('a connection moved mid-stream to a worker loses, repeats and reorders nothing, either way', async (t) => {
  const [client, accepted] = await pair(t);
  const early = randomBytes(3000);
  const bulk = randomBytes(8 * 1024 * 1024);
  client.write(early);
  // Node reads ahead on the accepted socket once asked (`read(0)`); wait until it holds bytes.
  accepted.read(0);
  while (accepted.readableLength === 0) await new Promise((r) => setTimeout(r, 5));
  const echoed: Buffer[] = [];
  client.on('data', (c: Buffer) => echoed.push(c));
  const ended = once(client, 'end');
  const handed = handOver(accepted);
  t.ok(handed, 'a plain TCP socket is handed over');
  t.ok(accepted.destroyed, "the giving thread's socket is let go at once");
  t.ok(handed!.head.byteLength > 0, 'what Node had read ahead goes with it');
  const worker = adoptingWorker(t, handed!);
  client.end(bulk); // sent while the worker starts: it waits in the kernel
  await ended;
  t.equal(sha(Buffer.concat(echoed)), sha(Buffer.concat([early, bulk])), 'the worker echoed every byte, in order, then ended');
});

t.test('a peer gone while its connection moves: the worker sees it close, nothing throws', async (t) => {
  const [client, accepted] = await pair(t);
  client.write('last words');
  accepted.read(0);
  while (accepted.readableLength === 0) await new Promise((r) => setTimeout(r, 5));
  const handed = handOver(accepted);
  t.ok(handed, 'handed over');
  client.resetAndDestroy(); // gone before the worker has adopted it
  const worker = adoptingWorker(t, handed!);
  const [said] = await once(worker, 'message');
  t.equal(said, 'closed', "the worker's socket closed");
});

t.test('a socket that cannot move is left as it was', async (t) => {
  const [client, accepted] = await pair(t);
  const tls = new TLSSocket(accepted);
  t.equal(handOver(tls as unknown as Socket), undefined, 'TLS: its bytes are records this thread decrypts');
  accepted.cork();
  accepted.write('queued');
  t.equal(handOver(accepted), undefined, 'a write still queued');
  t.notOk(accepted.destroyed, 'and the socket is still open');
  accepted.uncork();
  accepted.resume();
  const got = once(client, 'data');
  t.equal(String((await got)[0]), 'queued', 'and still works');
});

t.test('a connection that cannot be handed over is relayed to the worker through a socket pair', async (t) => {
  const [client, accepted] = await pair(t);
  accepted.allowHalfOpen = true; // the echo comes back after the client has ended its side
  // Not a socket (as a WebSocket's stream is not): its bytes must cross this thread.
  const wrapped = new Duplex({
    read: () => void accepted.resume(),
    write: (chunk, _enc, cb) => void accepted.write(chunk, cb),
    final: (cb) => void accepted.end(cb),
  });
  accepted.on('data', (c: Buffer) => wrapped.push(c)).on('end', () => wrapped.push(null));
  wrapped.on('close', () => accepted.destroy());
  const handed = moveOrRelay(wrapped);
  t.ok(handed, 'a descriptor for the worker');
  const worker = adoptingWorker(t, handed!);
  const closed = once(worker, 'message');
  const bulk = randomBytes(2 * 1024 * 1024);
  const echoed: Buffer[] = [];
  client.on('data', (c: Buffer) => echoed.push(c));
  const ended = once(client, 'end');
  client.end(bulk);
  await ended;
  t.equal(sha(Buffer.concat(echoed)), sha(bulk), 'echoed whole and in order, and the end passed both ways');
  const [said] = await closed;
  t.equal(said, 'closed', "the worker's end closed");
});
