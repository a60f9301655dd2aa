// `cluster-connector`: run a site connector.
//   cluster-connector --endpoint URL [--endpoint URL...] --id SITE_ID --secret SECRET [--silent-after MS]
//                     [--transport auto|wireguard|websocket] [--interface NAME] [--standby on|off] [--bind-address IP]
//                     [--raw-streams on|off]
// or CLUSTER_CONNECTOR_ENDPOINTS (comma-separated), CLUSTER_CONNECTOR_ID,
// CLUSTER_CONNECTOR_SECRET, CLUSTER_CONNECTOR_SILENT_AFTER, CLUSTER_CONNECTOR_TRANSPORT,
// CLUSTER_CONNECTOR_INTERFACE, CLUSTER_CONNECTOR_STANDBY, CLUSTER_CONNECTOR_BIND_ADDRESS,
// CLUSTER_CONNECTOR_RAW_STREAMS. SIGTERM/SIGINT say goodbye to the cluster before exiting.
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { createLogger } from '../core/log.ts';
import { loadSpliceRelay } from '../core/splice-relay.ts';
import { Connector, isTransportChoice } from './connector.ts';

const { values } = parseArgs({
  options: { endpoint: { type: 'string', multiple: true }, id: { type: 'string' }, secret: { type: 'string' }, 'log-level': { type: 'string' }, 'silent-after': { type: 'string' }, transport: { type: 'string' }, interface: { type: 'string' }, standby: { type: 'string' }, 'bind-address': { type: 'string' }, 'raw-streams': { type: 'string' } },
});
const env = process.env;
const endpoints = values.endpoint ?? (env.CLUSTER_CONNECTOR_ENDPOINTS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const siteId = values.id ?? env.CLUSTER_CONNECTOR_ID;
const secret = values.secret ?? env.CLUSTER_CONNECTOR_SECRET;
if (endpoints.length === 0 || !siteId || !secret) {
  process.stderr.write('usage: cluster-connector --endpoint URL [--endpoint URL...] --id SITE_ID --secret SECRET [--silent-after MS] [--transport auto|wireguard|websocket] [--interface NAME] [--standby on|off] [--bind-address IP] [--raw-streams on|off]\n');
  process.exit(2);
}
for (const e of endpoints) {
  try {
    if (!/^https?:$/.test(new URL(e).protocol)) throw new Error();
  } catch {
    process.stderr.write(`invalid endpoint ${JSON.stringify(e)}: expected an http:// or https:// URL\n`);
    process.exit(2);
  }
}
// How long a node may send nothing (pings go out every second) before the connector leaves it
// for another endpoint. Shorter moves sooner off a frozen node; too short moves off a node that
// is only slow, losing the streams in flight.
// Unset: the Connector's own default (3 s).
const silentRaw = values['silent-after'] ?? env.CLUSTER_CONNECTOR_SILENT_AFTER;
const silentAfterMs = silentRaw === undefined ? undefined : Number(silentRaw);
if (silentAfterMs !== undefined && (!Number.isInteger(silentAfterMs) || silentAfterMs < 1500 || silentAfterMs > 60_000)) {
  process.stderr.write(`invalid --silent-after ${JSON.stringify(silentRaw)}: expected milliseconds from 1500 to 60000\n`);
  process.exit(2);
}
// auto: WireGuard when the site is configured for it, an interface can be made here and the
// node's handshake answers in time; else websocket. wireguard: never websocket.
const transport = values.transport ?? env.CLUSTER_CONNECTOR_TRANSPORT ?? 'auto';
if (!isTransportChoice(transport)) {
  process.stderr.write(`invalid --transport ${JSON.stringify(transport)}: expected auto, wireguard or websocket\n`);
  process.exit(2);
}
// A second tunnel to another node, used the moment the primary's node dies or stops answering.
const standbyRaw = values.standby ?? env.CLUSTER_CONNECTOR_STANDBY ?? 'on';
if (standbyRaw !== 'on' && standbyRaw !== 'off') {
  process.stderr.write(`invalid --standby ${JSON.stringify(standbyRaw)}: expected on or off\n`);
  process.exit(2);
}
const interfaceName = values.interface ?? env.CLUSTER_CONNECTOR_INTERFACE;
if (interfaceName !== undefined && !/^[a-zA-Z0-9_=+.-]{1,15}$/.test(interfaceName)) {
  process.stderr.write(`invalid --interface ${JSON.stringify(interfaceName)}: expected an interface name of 1-15 letters, digits or _=+.-\n`);
  process.exit(2);
}
// The source address of its connections to the cluster, on a machine with several.
const bindAddress = values['bind-address'] ?? env.CLUSTER_CONNECTOR_BIND_ADDRESS;
if (bindAddress !== undefined && isIP(bindAddress) === 0) {
  process.stderr.write(`invalid --bind-address ${JSON.stringify(bindAddress)}: expected an IPv4 or IPv6 address\n`);
  process.exit(2);
}
// A TCP resource's stream on a connection of its own to the node (relayed in the kernel where
// the splice module is built): off keeps every stream on the tunnel's HTTP/2 session (a
// network that lets only the one data connection through, say).
const rawRaw = values['raw-streams'] ?? env.CLUSTER_CONNECTOR_RAW_STREAMS ?? 'on';
if (rawRaw !== 'on' && rawRaw !== 'off') {
  process.stderr.write(`invalid --raw-streams ${JSON.stringify(rawRaw)}: expected on or off\n`);
  process.exit(2);
}
const logger = createLogger({ level: values['log-level'] ?? env.CLUSTER_CONNECTOR_LOG_LEVEL ?? 'info', base: { site: siteId } });
const connector = new Connector({ endpoints, siteId, secret, logger, silentAfterMs, transport, interfaceName, standby: standbyRaw === 'on', localAddress: bindAddress, rawStreams: rawRaw === 'on' });
const splice = loadSpliceRelay();
if (rawRaw === 'on' && 'error' in splice) logger.warn({ reason: splice.error }, 'the splice relay is not available: raw TCP streams are copied through this process, at about half the bulk throughput');
connector.once('fatal', () => setTimeout(() => process.exit(1), 100));
connector.start();
const stop = () => void connector.stop().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
