// The connector's end of the data plane: an HTTP/2 server over the binary frames of the
// control WebSocket. Each CONNECT stream names a target id; the connector dials it only if
// that target is in the configuration the cluster pushed for this site (and its address
// matches), so a node can never use a connector to reach anything else.
import { createSocket } from 'node:dgram';
import http2 from 'node:http2';
import { connect, isIPv6 } from 'node:net';
import type { ConnectorTarget } from '../protocol/connector.ts';
import { Deframer, frameDatagram } from '../protocol/datagrams.ts';
import { CANCEL_TRAILER, PROTOCOL_HEADER, RAW_HEADER, RAW_KEY_HEADER, TARGET_HEADER, TUNNEL_H2_CONNECTION_WINDOW, TUNNEL_H2_SETTINGS } from '../protocol/tunnel-framing.ts';
import type { Logger } from '../core/log.ts';
import { relayStreams } from '../core/splice-relay.ts';
import { rawDialOf } from './raw-dial.ts';

/** The configured, enabled target a stream may reach, or undefined. */
export function allowedTarget(targets: ConnectorTarget[], headers: http2.IncomingHttpHeaders): ConnectorTarget | undefined {
  const id = headers[TARGET_HEADER];
  const t = targets.find((x) => x.id === id);
  if (!t || !t.enabled || headers[':method'] !== 'CONNECT') return undefined;
  if (headers[':authority'] !== `${t.host}:${t.port}`) return undefined;
  const protocol = headers[PROTOCOL_HEADER] ?? 'tcp';
  if (protocol === 'udp' ? t.scheme !== 'udp' : t.scheme === 'udp') return undefined;
  return t;
}

/**
 * Closed or destroyed, though its 'close' may not have come yet: a stream reset from this end
 * (the node's cancel) closes once the reset is written, which waits while the session cannot
 * write. Answering it then throws, and a throw in a socket callback ended the connector.
 */
const gone = (stream: http2.ServerHttp2Stream) => stream.closed || stream.destroyed;

/** One client's UDP session: framed datagrams on the stream <-> datagrams to the target. */
function relayDatagrams(stream: http2.ServerHttp2Stream, target: ConnectorTarget, log: Logger) {
  const sock = createSocket(isIPv6(target.host) ? 'udp6' : 'udp4');
  const deframer = new Deframer();
  sock.on('error', (err) => {
    log.debug({ target: target.id, err: err.message }, 'udp target error');
    if (gone(stream)) return;
    if (!stream.headersSent) stream.respond({ ':status': 502 }, { endStream: true });
    else stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
  });
  sock.connect(target.port, target.host, () => {
    if (gone(stream)) return void sock.close();
    stream.respond({ ':status': 200 });
    stream.on('data', (chunk: Buffer) => {
      for (const d of deframer.push(chunk)) sock.send(d);
    });
    sock.on('message', (m) => stream.write(frameDatagram(m)));
  });
  stream.once('close', () => sock.close());
}

export function createDataPlaneServer(targets: () => ConnectorTarget[], logger: Logger): http2.Http2Server {
  const log = logger.child({ component: 'data-plane' });
  const server = http2.createServer({ settings: TUNNEL_H2_SETTINGS });
  server.on('session', (session) => session.setLocalWindowSize(TUNNEL_H2_CONNECTION_WINDOW));
  server.on('sessionError', (err) => log.debug({ err: err.message }, 'tunnel session error'));
  server.on('stream', (stream: http2.ServerHttp2Stream, headers) => {
    stream.on('error', () => {});
    // The node gave the stream up (gateways/connector/stream-cancel.ts): the reset goes out from
    // this end, since nghttp2 ends a server session that receives too many. Closing the stream
    // closes the target connection too (endWithStream; not resetAndDestroy, which on Node 20
    // left the process spinning once its sockets were gone).
    stream.on('trailers', (trailers) => trailers[CANCEL_TRAILER] && !stream.closed && stream.close(http2.constants.NGHTTP2_CANCEL));
    const target = allowedTarget(targets(), headers);
    if (!target) {
      log.warn({ target: headers[TARGET_HEADER], authority: headers[':authority'] }, 'refused a stream to a target not configured for this site');
      stream.respond({ ':status': 403 }, { endStream: true });
      return;
    }
    if (target.scheme === 'udp') return relayDatagrams(stream, target, log);
    // A raw stream (RAW_UPGRADE): the node offered this stream a connection of its own.
    const rawKey = headers[RAW_KEY_HEADER];
    const dial = typeof rawKey === 'string' ? rawDialOf(stream.session) : undefined;
    const sock = connect({ host: target.host, port: target.port });
    sock.setNoDelay(true);
    const overStream = () => {
      stream.respond({ ':status': 200 });
      stream.pipe(sock);
      sock.pipe(stream);
    };
    const endWithStream = () => sock.destroy();
    sock.once('connect', () => {
      if (gone(stream)) return void sock.destroy(); // the node gave up while this connected
      if (!dial) return overStream();
      sock.pause(); // what the target says first waits for the raw connection
      dial(rawKey as string).then(
        ({ socket, head }) => {
          if (gone(stream) || sock.destroyed) return void socket.destroy(); // the node gave up meanwhile
          stream.off('close', endWithStream);
          stream.respond({ ':status': 200, [RAW_HEADER]: '1' }, { endStream: true });
          if (head.length > 0) socket.unshift(head);
          socket.on('error', () => {});
          relayStreams(sock, socket);
        },
        (err: Error) => {
          // Not reachable that way (a proxy in between, another node answering): the stream carries it.
          log.debug({ target: target.id, err: err.message }, 'no raw connection; the stream carries the bytes');
          if (!gone(stream) && !sock.destroyed) overStream();
          else sock.destroy();
        },
      );
    });
    sock.once('error', (err) => {
      if (gone(stream)) return;
      if (!stream.headersSent) stream.respond({ ':status': 502 }, { endStream: true });
      else stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
      log.debug({ target: target.id, err: err.message }, 'target connection failed');
    });
    stream.once('close', endWithStream);
  });
  return server;
}
