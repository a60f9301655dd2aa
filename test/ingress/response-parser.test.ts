// The upstream response reader: where a response ends and whether its connection may carry
// the next exchange decide which bytes reach which client, so every framing is checked, fed
// whole and one byte at a time, and every ambiguity must be refused.
import t from 'tap';
import { ResponseParser, type ResponseHead } from '../../gateways/ingress/response-parser.ts';
import { headerLine, requestLine } from '../../gateways/ingress/request-head.ts';

interface Read { head?: ResponseHead; body: string; reusable?: boolean; error?: string }

function read(raw: string, opts: { method?: string; split?: boolean; eof?: boolean } = {}): Read {
  const out: Read = { body: '' };
  const p = new ResponseParser(opts.method ?? 'GET', {
    head: (h) => (out.head = h),
    body: (c) => (out.body += c.toString('latin1')),
    end: (reusable) => (out.reusable = reusable),
  });
  const bytes = Buffer.from(raw, 'latin1');
  try {
    if (opts.split) for (let i = 0; i < bytes.length; i++) p.feed(bytes.subarray(i, i + 1));
    else p.feed(bytes);
    if (opts.eof) p.eof();
  } catch (err) {
    out.error = (err as { code?: string; details?: { reason?: string } }).details?.reason ?? (err as Error).message;
  }
  return out;
}

t.test('framings: content-length, chunked, no body, until close', async (t) => {
  for (const split of [false, true]) {
    const how = split ? ' (a byte at a time)' : '';
    t.match(read('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello', { split }), { head: { status: 200, reason: 'OK', headers: { 'content-length': '5', 'x-a': '1' } }, body: 'hello', reusable: true }, `content-length${how}`);
    t.match(read('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: dropped\r\n\r\n', { split }), { body: 'hello world', reusable: true }, `chunked, extensions and trailers${how}`);
    t.match(read('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok', { split }), { head: { status: 201 }, body: 'ok', reusable: true }, `interim responses are skipped${how}`);
    t.match(read('HTTP/1.1 200 OK\r\n\r\nuntil the end', { split, eof: true }), { body: 'until the end', reusable: false }, `no length: body until close, connection not reused${how}`);
  }
  t.match(read('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n', { method: 'HEAD' }), { head: { status: 200 }, body: '', reusable: true }, 'HEAD: no body whatever the length says');
  t.match(read('HTTP/1.1 204 No Content\r\n\r\n'), { body: '', reusable: true });
  t.match(read('HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n'), { body: '', reusable: true });
  t.match(read('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'), { body: '', reusable: true });
  t.match(read('HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-length: 0\r\n\r\n'), { head: { headers: { 'set-cookie': ['a=1', 'b=2'] } } }, 'a repeated header keeps every value');
  t.match(read('HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok'), { body: 'ok', reusable: true }, 'repeated equal lengths are one length');
  t.same(read('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok').head?.headers['content-length'], '2', 'and go on to the client as one header');
});

t.test('a connection is reused only when both sides said nothing against it', async (t) => {
  t.match(read('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok'), { body: 'ok', reusable: false });
  t.match(read('HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok'), { reusable: false }, 'HTTP/1.0 without keep-alive');
  t.match(read('HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok'), { reusable: true });
  t.match(read('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA'), { body: 'ok', reusable: false }, 'bytes after the response: out of step, not reused');
  t.match(read('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n2\r\nok\r\n0\r\n\r\n'), { body: 'ok', reusable: false }, 'both framings: chunked wins, connection not reused');
  t.match(read('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nzz', { eof: true }), { body: 'zz', reusable: false }, 'a coding that is not chunked: until close');
});

t.test('malformed responses are refused, never guessed at', async (t) => {
  const refused: Array<[string, string, string]> = [
    ['HTTP/2 200 OK\r\n\r\n', 'bad status line', 'not HTTP/1.x'],
    ['HTTP/1.1 20 OK\r\n\r\n', 'bad status line', 'two-digit status'],
    ['HTTP/1.1 200 OK\r\nbad header\r\n\r\n', 'bad header line', 'no colon'],
    ['HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n', 'bad header line', 'obs-fold'],
    ['HTTP/1.1 200 OK\r\nx a: 1\r\n\r\n', 'bad header name', 'space in a name'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\nhello', 'bad content-length', 'two lengths'],
    ['HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n', 'bad content-length', 'negative length'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab', 'bad content-length', 'two length headers'],
    ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n', 'bad chunk size', 'not hex'],
    ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX', 'chunk not followed by CRLF', 'chunk longer than it said'],
    ['HTTP/1.1 101 Switching Protocols\r\n\r\n', 'switching protocols on a plain request', '101 on a plain request'],
    ['HTTP/1.1 200 OK\r\nx-a: 1\nx-b: 2\r\n\r\n', 'bad header value', 'a bare LF inside the head'],
    ['HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\n\r\n', 'bad header value', 'a bare CR inside the head'],
    ['HTTP/1.1 200 OK\r\nx-a: a\0b\r\n\r\n', 'bad header value', 'a NUL in a value'],
  ];
  for (const [raw, reason, what] of refused) t.match(read(raw), { error: reason }, what);
  t.match(read(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70 * 1024)}\r\n\r\n`), { error: 'head too large' });
  t.match(read('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort', { eof: true }), { body: 'short', error: 'connection closed before the response ended' }, 'cut short');
});

t.test('request heads: one string, and nothing that could split a request reaches the target', async (t) => {
  t.equal(requestLine('GET', '/a?b=1') + headerLine('host', 'x.test') + headerLine('x-m', '1'), 'GET /a?b=1 HTTP/1.1\r\nhost: x.test\r\nx-m: 1\r\n');
  t.throws(() => requestLine('GET', '/a\r\nx: 1'), { code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST' });
  t.throws(() => requestLine('GET', '/a b'), { code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST' });
  t.throws(() => headerLine('x-a', 'v\r\nhost: evil'), { code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST' });
  // Written as latin1: a character past 0xff would lose its high byte (U+010A to LF), so none passes.
  t.throws(() => headerLine('x-a', 'v\u010ahost: evil'), { code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST' });
  t.throws(() => requestLine('GET', '/\u0120x'), { code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST' });
  t.throws(() => headerLine('x-a', 'v\0'), { code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST' });
  t.throws(() => headerLine('x:a', 'v'), { code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST' });
  // A client's byte over 0x7f (read by Node as one latin1 character) goes on as that byte.
  t.equal(Buffer.from(headerLine('x-a', 'caf\u00e9'), 'latin1').toString('hex'), Buffer.from('x-a: caf\xe9\r\n', 'latin1').toString('hex'));
});
