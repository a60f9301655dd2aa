// The relays bench:tunnel and bench:ingress start as processes of their own: the floor (the
// least a Node relay of the tunnel's shape does) and the target they all reach.
import { connect } from 'node:net';
import { waitUntil } from '../devenv/process.ts';
import { TUNNEL_H2_SETTINGS } from '../protocol/tunnel-framing.ts';

/** Resolves once something accepts connections on 127.0.0.1:port. */
export const listening = (port: number) => waitUntil(`a listener on ${port}`, () => new Promise<boolean>((resolve) => {
  const s = connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
  s.on('error', () => resolve(false));
}), { timeoutMs: 10_000 });

/**
 * The floor: the least a Node relay of the tunnel's shape does per request, measured beside it
 * in the same run. A "node" (an HTTP server that writes each request as HTTP/1.1 on a kept
 * HTTP/2 CONNECT stream, reads the answer by its content-length and writes it back) and a
 * "connector" (an HTTP/2 server piping each stream to a TCP connection to the target), with
 * the tunnel's window settings; no routing, no access, no strict parsing, no metrics, no
 * deadlines. How far the real node's CPU per request is above this one's is the work of ours.
 */
export const FLOOR_CONNECTOR = `
import http2 from 'node:http2'; import net from 'node:net';
const [port, targetPort] = process.argv.slice(-2).map(Number);
const server = http2.createServer({ settings: ${JSON.stringify(TUNNEL_H2_SETTINGS)} });
server.on('stream', (stream) => {
  const sock = net.connect(targetPort, '127.0.0.1', () => { sock.setNoDelay(true); stream.respond({ ':status': 200 }); stream.pipe(sock); sock.pipe(stream); });
  sock.on('error', () => stream.destroy()); stream.on('error', () => sock.destroy());
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0)); // a clean exit writes its CPU profile (BENCH_CPU_PROFILE)
`;
export const FLOOR_NODE = `
import http from 'node:http'; import http2 from 'node:http2';
const [port, connectorPort, targetPort] = process.argv.slice(-3).map(Number);
const session = http2.connect('http://127.0.0.1:' + connectorPort, { settings: ${JSON.stringify(TUNNEL_H2_SETTINGS)} });
const idle = [];
const open = () => new Promise((resolve, reject) => { const s = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:' + targetPort }); s.once('response', () => resolve(s)); s.once('error', reject); });
http.createServer(async (req, res) => {
  const s = idle.pop() ?? (await open());
  let buf = '';
  const onData = (d) => {
    buf += d.latin1Slice();
    const end = buf.indexOf('\\r\\n\\r\\n');
    if (end < 0) return;
    const len = Number(/content-length: *(\\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
    if (buf.length < end + 4 + len) return;
    s.off('data', onData);
    res.writeHead(200, { 'content-length': len });
    res.end(buf.slice(end + 4, end + 4 + len), 'latin1');
    idle.push(s);
  };
  s.on('data', onData);
  s.write('GET ' + req.url + ' HTTP/1.1\\r\\nhost: ' + req.headers.host + '\\r\\nx-forwarded-for: ' + req.socket.remoteAddress + '\\r\\n\\r\\n');
}).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

/** Small HTTP answers on the first port, a bulk TCP source (MB megabytes a connection) on the second. */
export const TARGET = `
import { createServer } from 'node:http';
import { createServer as tcp } from 'node:net';
const [httpPort, bulkPort, mb] = process.argv.slice(-3).map(Number);
createServer((req, res) => res.end('hello')).listen(httpPort, '127.0.0.1');
const chunk = Buffer.alloc(64 * 1024, 1);
tcp((s) => {
  let left = mb * 16;
  const pump = () => { while (left > 0) { left--; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
  s.on('error', () => {});
  pump();
}).listen(bulkPort, '127.0.0.1');
`;
