// The ingress's own upstream client: one exchange per request on a kept-alive tunnel stream,
// the stream's events passed to whoever holds it (the exchange, then the pool), and a
// response head that does not come in time failing the request with a coded error.
import { EventEmitter } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { Duplex } from 'node:stream';
import t from 'tap';
import { exchange, waitingForHead, type ExchangeOutcome } from '../../gateways/ingress/upstream-exchange.ts';
import { UpstreamPool } from '../../gateways/ingress/upstream-pool.ts';

/** A tunnel stream whose target answers `reply` to each request head (or nothing). */
function target(reply?: string): Duplex & { heads: string[] } {
  const heads: string[] = [];
  const d = new Duplex({
    read() {},
    write(chunk, _enc, cb) {
      heads.push(String(chunk));
      if (reply) setImmediate(() => d.push(reply));
      cb();
    },
  });
  return Object.assign(d, { heads });
}

/** What the client received: status, headers and body, as a ServerResponse would be told. */
class Client extends EventEmitter {
  status = 0;
  headers: Record<string, unknown> = {};
  body = '';
  ended = false;
  writableFinished = false;
  /** Headers as Node takes them here: name/value pairs in one flat list, a repeated name repeated. */
  writeHead(status: number, _reason: string, pairs: string[]) {
    this.status = status;
    for (let i = 0; i < pairs.length; i += 2) {
      const had = this.headers[pairs[i]!] as string | string[] | undefined;
      this.headers[pairs[i]!] = had === undefined ? pairs[i + 1] : [...[had].flat(), pairs[i + 1]!];
    }
  }
  write(chunk: Buffer) {
    this.body += String(chunk);
    return true;
  }
  end(chunk?: string | Buffer) {
    if (chunk !== undefined) this.body += String(chunk);
    this.ended = this.writableFinished = true;
  }
  destroy() {}
}

const send = (stream: Duplex, res: Client, timeoutMs = 5000) =>
  new Promise<ExchangeOutcome>((resolve) => exchange(stream, { method: 'GET', head: 'GET /x HTTP/1.1\r\nhost: a.example\r\n\r\n', timeoutMs }, res as unknown as ServerResponse, resolve));

t.test('two exchanges on one kept-alive stream, the pool holding it between them', async (t) => {
  const stream = target('HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\nhello');
  const pool = new UpstreamPool();
  t.teardown(() => pool.close());
  const path = { key: 'k', tls: false, servername: 'a.example', open: async () => stream };
  const first = await pool.open(path);
  const a = new Client();
  t.same(await send(first, a), { sent: true, finished: true, reusable: true });
  t.match(a, { status: 200, body: 'hello', ended: true, headers: { 'content-length': '5' } });
  t.notOk('connection' in a.headers, 'hop-by-hop headers are not relayed');
  pool.release('k', first, true);
  t.equal(pool.idle(), 1);
  const again = pool.take('k');
  t.equal(again, stream, 'the same stream is taken again, without a promise');
  const b = new Client();
  t.same(await send(again!, b), { sent: true, finished: true, reusable: true });
  t.equal(b.body, 'hello', 'the second response reached the second client only');
  t.equal(stream.heads.length, 2);
  t.equal(stream.listenerCount('data'), 1, 'one data listener for the stream\'s whole life');
});

t.test('an idle stream that says anything is dropped from the pool', async (t) => {
  const stream = target();
  const pool = new UpstreamPool();
  t.teardown(() => pool.close());
  pool.release('k', await pool.open({ key: 'k', tls: false, servername: 'a', open: async () => stream }), true);
  t.equal(pool.idle(), 1);
  stream.push('HTTP/1.1 408 Request Timeout\r\n\r\n');
  await new Promise((r) => setImmediate(r));
  t.equal(pool.idle(), 0, 'dropped');
  t.ok(stream.destroyed, 'and closed');
  t.equal(pool.take('k'), undefined);
});

t.test('a node that stopped answering: every stream through it ends, idle or carrying a request; others stay', async (t) => {
  const pool = new UpstreamPool();
  t.teardown(() => pool.close());
  const via = (node: string, stream: Duplex) => pool.open({ key: `t1=http://a:80@${node}`, tls: false, servername: 'a', open: async () => stream });
  const [idle, busy, elsewhere] = [target(), target(), target()];
  pool.release('t1=http://a:80@node-2', await via('node-2', idle), true);
  await via('node-2', busy); // taken by a request, not released
  pool.release('t1=http://a:80@node-3', await via('node-3', elsewhere), true);
  t.equal(pool.idle(), 2);
  pool.dropNode('node-2');
  t.ok(idle.destroyed, 'the idle stream through it is closed');
  t.ok(busy.destroyed, 'the busy one too: its request fails now instead of waiting');
  t.notOk(elsewhere.destroyed, 'a stream through another node stays');
  t.equal(pool.take('t1=http://a:80@node-2'), undefined);
  t.equal(pool.take('t1=http://a:80@node-3'), elsewhere);
  // A stream closed by itself is forgotten: dropping its node later touches nothing.
  elsewhere.destroy();
  await new Promise((r) => setImmediate(r));
  pool.dropNode('node-3');
  t.equal(pool.idle(), 0);
});

t.test('no response head within the timeout: a coded failure, nothing sent, the stream closed', async (t) => {
  const stream = target();
  const res = new Client();
  // The sweep does not hold the process open (a node's servers do): this test must.
  const hold = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(hold));
  const t0 = Date.now();
  const outcome = await send(stream, res, 200);
  const took = Date.now() - t0;
  t.equal(outcome.sent, false);
  t.match(outcome, { error: { code: 'CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT' } });
  t.ok(took >= 190 && took < 1000, `failed at its deadline (${took} ms)`);
  t.equal(res.status, 0, 'nothing reached the client');
  t.ok(stream.destroyed, 'the stream is not reused');
  // A head that comes in time is not timed out later.
  const ok = await send(target('HTTP/1.1 204 No Content\r\n\r\n'), new Client(), 200);
  await new Promise((r) => setTimeout(r, 300));
  t.same(ok, { sent: true, finished: true, reusable: true });
});

t.test('many waiting at once: each times out or is answered on its own, whichever order they end in', async (t) => {
  const hold = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(hold));
  // Five exchanges wait together; the first, middle and last to start are answered in turn
  // (each leaves the waiting list from a different place), the other two time out (theirs is
  // the short deadline: a loaded machine cannot make the answered ones late).
  const streams = [0, 1, 2, 3, 4].map(() => target());
  const outcomes = streams.map((s, i) => send(s, new Client(), i % 2 ? 200 : 5000));
  t.equal(waitingForHead(), 5, 'all five wait for a head');
  for (const i of [2, 4, 0]) {
    streams[i]!.push('HTTP/1.1 204 No Content\r\n\r\n');
    await new Promise((r) => setImmediate(r));
  }
  // A longer wait started meanwhile is not cut by the others' deadlines.
  const long = target();
  const longOutcome = send(long, new Client(), 5000);
  const ended = await Promise.all(outcomes);
  t.same(ended.map((o) => o.sent), [true, false, true, false, true], 'the answered ones sent, the others failed');
  t.match(ended[1], { error: { code: 'CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT' } });
  t.match(ended[3], { error: { code: 'CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT' } });
  t.equal(waitingForHead(), 1, 'only the longer wait is left');
  long.push('HTTP/1.1 204 No Content\r\n\r\n');
  t.same(await longOutcome, { sent: true, finished: true, reusable: true });
  t.equal(waitingForHead(), 0, 'nothing is left waiting');
});

t.test('a streamed body goes on as it comes', async (t) => {
  const stream = target('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
  const res = new Client();
  const outcome = send(stream, res);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(res.body, 'hello', 'the first chunk reached the client before the response ended');
  t.notOk(res.ended);
  stream.push('6\r\n world\r\n0\r\n\r\n');
  t.same(await outcome, { sent: true, finished: true, reusable: true });
  t.equal(res.body, 'hello world');
});

t.test('through a real ServerResponse: repeated headers kept, a length beside chunked framing not passed on', async (t) => {
  const reply = 'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
  const server = createServer((_req, res) => exchange(target(reply), { method: 'GET', head: 'GET / HTTP/1.1\r\nhost: a\r\n\r\n', timeoutMs: 5000 }, res, () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const raw = await new Promise<string>((resolve, reject) => {
    const c = connect((server.address() as { port: number }).port, '127.0.0.1');
    let got = '';
    c.on('data', (d) => {
      got += d;
      if (got.endsWith('0\r\n\r\n')) (c.end(), resolve(got));
    });
    c.on('error', reject);
    c.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
  });
  const [head, body] = raw.split('\r\n\r\n');
  const lines = head!.toLowerCase().split('\r\n');
  t.same(lines.filter((l) => l.startsWith('set-cookie:')), ['set-cookie: a=1', 'set-cookie: b=2'], 'both cookies, in order');
  t.notOk(lines.some((l) => l.startsWith('content-length:')), 'the length that disagreed with the chunked framing is not passed on');
  t.ok(lines.includes('transfer-encoding: chunked'), 'the client gets the body framed by this edge');
  t.equal(body, '5\r\nhello\r\n0', 'the decoded body, chunked again');
});
