// The connector control protocol: typed, versioned JSON messages over the WebSocket at
// /api/v1/ws, validated on both sides. Anything that does not parse closes the connection
// with a coded reason and changes nothing.
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;
/** Largest control message accepted (bytes); bigger ones close the connection. */
export const MAX_CONTROL_MESSAGE = 64 * 1024;
/**
 * Sent with a standby's control upgrade (`standby`): a node running late defers a standby,
 * never a primary, before any work is done for it. A connector that does not send it is
 * admitted as a primary would be.
 */
export const ROLE_HEADER = 'x-cluster-connector-role';
/**
 * What else the connector understands, comma-separated, sent with every control upgrade:
 * `standby-advice` (the message of that type), `raw-streams` (RAW_UPGRADE in
 * protocol/tunnel-framing.ts). A node sends a connector nothing it did not
 * name here, so connectors and nodes of different releases keep working together.
 */
export const FEATURES_HEADER = 'x-cluster-connector-features';

/** WebSocket close codes used by the control channel (4000-4999 are application codes). */
export const CLOSE = {
  badMessage: { code: 4400, reason: 'CLUSTER_ERR_CONNECTOR_BAD_MESSAGE' },
  tooLarge: { code: 1009, reason: 'CLUSTER_ERR_CONNECTOR_MESSAGE_TOO_LARGE' },
  unauthenticated: { code: 4401, reason: 'CLUSTER_ERR_CONNECTOR_UNAUTHENTICATED' },
  superseded: { code: 4409, reason: 'CLUSTER_ERR_CONNECTOR_SUPERSEDED' },
  draining: { code: 4503, reason: 'CLUSTER_ERR_NODE_DRAINING' },
  /** A standby registration refused: the site is not online elsewhere, or the token is stale. */
  notStandby: { code: 4412, reason: 'standby refused' },
  /** The WireGuard data plane closed while the control connection was up: register again. */
  tunnelLost: { code: 4502, reason: 'CLUSTER_ERR_TUNNEL_DOWN' },
  /** The site's transport was changed: register again to get the other one. */
  transportChanged: { code: 4205, reason: 'transport changed' },
} as const;

const Target = z.object({
  id: z.string().uuid(),
  host: z.string().min(1).max(253),
  port: z.number().int().min(1).max(65535),
  scheme: z.enum(['http', 'https', 'tcp', 'udp']),
  enabled: z.boolean(),
  healthCheck: z.record(z.unknown()),
});
export type ConnectorTarget = z.infer<typeof Target>;

/** Port the connector's data plane listens on, on its tunnel address, over WireGuard. */
export const WIREGUARD_DATA_PORT = 51821;

/** What a connector needs to bring up its end of the WireGuard tunnel to the node that answered. */
const WireGuardOffer = z.object({
  /** The node's public key (base64). */
  publicKey: z.string(),
  /** host:port the connector sends WireGuard to. */
  endpoint: z.string(),
  nodeAddress: z.string().ip({ version: 'v4' }),
  siteAddress: z.string().ip({ version: 'v4' }),
  /** The connector listens here (on siteAddress) for the node's data-plane connections. */
  dataPort: z.number().int().min(1).max(65535),
  mtu: z.number().int().min(1280).max(9000),
});
export type WireGuardOffer = z.infer<typeof WireGuardOffer>;
/** The node will not tunnel this site over WireGuard (coded reason); the connector uses websocket. */
const WireGuardRefusal = z.object({ refused: z.object({ code: z.string(), message: z.string() }) });

/** Connector -> node. */
export const ConnectorMessage = z.discriminatedUnion('type', [
  /**
   * `wireguard`: the connector brought up a WireGuard interface and can use it; the node then
   * waits for `data-plane` before opening streams. Without it, streams run over this WebSocket at once.
   */
  /**
   * `role: standby`: a second tunnel, to another node, that does not take the site: traffic
   * uses it when the primary's node dies or stops answering (always over this WebSocket).
   */
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('register'), connectorVersion: z.string().max(50), transports: z.array(z.enum(['websocket', 'wireguard'])).max(4), wireguard: z.object({ publicKey: z.string().max(64) }).strict().optional(), role: z.enum(['primary', 'standby']).optional() }).strict(),
  /** On a standby connection: the primary is lost, this one takes the site. */
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('promote') }).strict(),
  /** Which data plane the connector brought up after `registered` (only when it registered with `wireguard`). */
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('data-plane'), transport: z.enum(['websocket', 'wireguard']), reason: z.string().max(300).optional() }).strict(),
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('pong'), at: z.number() }).strict(),
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('health'), targets: z.array(z.object({ id: z.string().uuid(), healthy: z.boolean() }).strict()).max(1000) }).strict(),
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('disconnect'), reason: z.string().max(200) }).strict(),
]);
export type ConnectorMessage = z.infer<typeof ConnectorMessage>;

/** Node -> connector. */
export const NodeMessage = z.discriminatedUnion('type', [
  /** `wireguard`: an offer, or a refusal, when the connector registered with a WireGuard key. */
  z.object({
    v: z.literal(PROTOCOL_VERSION), type: z.literal('registered'), siteId: z.string(), node: z.string(), epoch: z.number(),
    wireguard: z.union([WireGuardOffer, WireGuardRefusal]).optional(),
    role: z.enum(['primary', 'standby']).optional(),
    /** On a primary: the node the cluster advises for the standby tunnel (another live node, never this one). */
    standby: z.object({ node: z.string(), endpoint: z.string() }).optional(),
    /**
     * The data plane may move to a connection of its own: upgrade at `path` with this one-time
     * key (tunnel-framing.ts), at the endpoint the WebSocket used, or, when a load balancer
     * sent that elsewhere, at this node's own `endpoint`.
     */
    direct: z.object({ path: z.string().max(100), key: z.string().max(100), endpoint: z.string().max(300).optional() }).optional(),
  }),
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('config'), targets: z.array(Target) }),
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('ping'), at: z.number() }),
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('disconnect'), reason: z.string() }),
  /**
   * On a primary whose connector named `standby-advice` (FEATURES_HEADER): the node advised for
   * the standby tunnel changed (the one advised before died or left); none: no other node.
   */
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('standby-advice'), standby: z.object({ node: z.string(), endpoint: z.string() }).optional() }),
  /** The node is draining: connect elsewhere, keep this connection until the node closes it. */
  z.object({ v: z.literal(PROTOCOL_VERSION), type: z.literal('move'), reason: z.string() }),
]);
export type NodeMessage = z.infer<typeof NodeMessage>;

/** The node's end of one connector control connection (held by the site actor). */
export interface ControlSession {
  readonly id: string;
  send(msg: NodeMessage): void;
  close(code: number, reason: string): void;
}
