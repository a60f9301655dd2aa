// The receiving end of a forwarded client connection: another node's ingress had no tunnel
// for the resource's sites and sent the connection here, PROXY v2 header first.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { relayStreams } from '../../core/splice-relay.ts';
import type { Logger } from '../../core/log.ts';
import type { TunnelRegistry } from '../connector/tunnels.ts';
import { decodeProxyV2 } from './proxy-protocol.ts';
import type { RouteTable } from './routes.ts';

/**
 * `targetId` names the target to connect to through a local tunnel, or is "tls": raw TLS
 * from a client that this node terminates (`terminateTls`).
 */
export function acceptForwarded(
  stream: Duplex,
  resourceId: string,
  targetId: string,
  deps: { routes: RouteTable; tunnels: TunnelRegistry; logger: Logger; terminateTls: (stream: Duplex, clientAddress: string) => void },
) {
  const log = deps.logger.child({ component: 'ingress-forwarded', resourceId });
  stream.on('error', () => {});
  let buf = Buffer.alloc(0);
  const onData = async (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    const parsed = decodeProxyV2(buf);
    if ('error' in parsed) {
      if (parsed.error === 'short header' || parsed.error === 'truncated header') {
        if (buf.length < 536) return; // wait for the rest (a v2 header is at most 16 + 520 bytes here)
      }
      log.warn({ err: parsed.error }, 'forwarded connection without a valid PROXY header');
      return stream.destroy();
    }
    stream.off('data', onData);
    stream.pause();
    const rest = buf.subarray(parsed.length);
    if (targetId === 'tls') {
      if (rest.length) stream.unshift(rest);
      deps.terminateTls(stream, parsed.addresses?.source.address ?? 'unknown');
      // A socket (a connection handed to the ingress thread) is read by its TLS wrap from
      // here on, what was unshifted first; reading it here too would race the wrap for the
      // bytes. Any other stream (a WebSocket's) is fed to the wrap by being read.
      if (!(stream instanceof Socket)) stream.resume();
      return;
    }
    const route = deps.routes.byId(resourceId);
    const target = route?.targets.find((t) => t.id === targetId && t.enabled);
    try {
      if (!target) throw new Error('no such enabled target');
      // A TCP resource's stream may get a raw connection to the connector (no HTTP/2 framing on that hop).
      const upstream = await deps.tunnels.open(target.siteId, target, target.scheme === 'udp' ? 'udp' : 'tcp', undefined, route?.protocol === 'tcp');
      if (rest.length) upstream.write(rest);
      relayStreams(stream, upstream);
      log.debug({ client: parsed.addresses?.source }, 'forwarded connection routed');
    } catch (err) {
      log.warn({ client: parsed.addresses?.source, err: (err as Error).message }, 'forwarded connection not routed');
      stream.destroy();
    }
  };
  stream.on('data', onData);
}
