// A TCP connection moved to a worker thread (core/socket-handover.ts, the first step of
// docs/data-plane-worker.md): real loopback sockets, the bytes compared end to end.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Worker } from 'node:worker_threads';
import { handOver, type HandedSocket } from '../../core/socket-handover.ts';
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
