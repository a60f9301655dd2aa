// The site actor: one per site, living on the node that holds its connector's control
// connection (claimed there, newest connection wins). It owns the session, pushes the site's
// targets to the connector, keeps the targets' reported health, and records when the site
// was last seen (it tells the node's batched, fenced writer while the site is online here).
// Online status cluster-wide is its ownership entry.
// Over the wireguard transport it also owns the site's peer on this node's device: offered on
// attach, withdrawn when the connection ends, the site moves, or the actor stops.
import { z } from 'zod';
import { ClusterError } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import { pooledLoader, uuidsOnly } from '../persistence/batch-load.ts';
import { sql, type DatabasePool } from '../persistence/db.ts';
import { CLOSE, PROTOCOL_VERSION, type ConnectorTarget, type ControlSession, type WireGuardOffer } from '../protocol/connector.ts';
import type { SiteMsg } from '../protocol/actor-messages.ts';
import type { SiteSession } from '../persistence/actor-stores.ts';
import type { WireGuardSide } from '../protocol/wireguard.ts';
import { unknownMessage, type Behavior } from './runtime.ts';

export type { SiteMsg };

export interface SiteState {
  session: ControlSession | undefined;
  /** The secret generation the session's token was issued under. */
  sessionGeneration: number;
  /** The site's current secret generation; null once the site is deleted. */
  generation: number | null;
  /** The transport the site is configured for: WireGuard is offered only to a `wireguard` site. */
  siteTransport: 'websocket' | 'wireguard';
  connectedSince: number | undefined;
  /** The session's data plane, once known. */
  transport: 'websocket' | 'wireguard' | undefined;
  /** Whether this node's device holds the site's peer. */
  wireguard: boolean;
  targets: ConnectorTarget[];
  health: Map<string, boolean>;
}

export interface SiteDeps {
  db: DatabasePool;
  /** Records (or, with null, clears) the connected session for the API's site status. */
  publishSession: (siteId: string, session: SiteSession | null) => Promise<void>;
  /** Makes reported target health visible to every node's ingress. */
  publishHealth: (siteId: string, targets: Array<{ id: string; healthy: boolean }>) => Promise<void>;
  nodeId: string;
  clock: Clock;
  /** The site is online here (false: not any more): the node's batched writer records last-seen meanwhile. */
  online?: (on: boolean) => void;
  /** This node's WireGuard side, or why it has none. */
  wireguard: () => WireGuardSide;
  /** True while this node is fenced (its lease lost): a stop then is not a goodbye to the connector. */
  fenced?: () => boolean;
  /** Another live node the connector should hold its standby tunnel to (none: a single node). */
  standbyAdvice?: (siteId: string) => { node: string; endpoint: string } | undefined;
}

/** How long a handed-over tunnel may finish its streams (the control channel gives a retiring WebSocket 2.3 s). */
const TUNNEL_RETIRE_MS = 3000;

const targetRow = z.object({ id: z.string(), host: z.string(), port: z.number(), scheme: z.enum(['http', 'https', 'tcp', 'udp']), enabled: z.boolean(), healthCheck: z.record(z.unknown()) });

const siteRow = z.object({ id: z.string(), secret_generation: z.number(), transport: z.enum(['websocket', 'wireguard']), targets: z.array(targetRow) });

interface Loaded {
  targets: ConnectorTarget[];
  generation: number;
  transport: 'websocket' | 'wireguard';
}

/** The site's targets, transport and current secret generation, by id; the site actors spawned in one turn (a reconnect storm) load in one statement. */
const loadSites = pooledLoader(async (db: DatabasePool, ids: string[]) => {
  const rows = await db.any(sql.type(siteRow)`
    SELECT s.id, s.secret_generation, s.transport,
      COALESCE((SELECT json_agg(json_build_object('id', t.id, 'host', t.host, 'port', t.port, 'scheme', t.scheme, 'enabled', t.enabled, 'healthCheck', t.health_check) ORDER BY t.id)
        FROM targets t WHERE t.site_id = s.id), '[]') AS targets
    FROM sites s WHERE s.id = ANY(${sql.array(uuidsOnly(ids), 'uuid')})`);
  return new Map(rows.map((r) => [r.id, { targets: r.targets, generation: r.secret_generation, transport: r.transport } satisfies Loaded]));
});

/** null once the site is deleted. */
const load = async (db: DatabasePool, siteId: string): Promise<Loaded | null> => (await loadSites(db, siteId)) ?? null;

export function siteBehavior(deps: SiteDeps, siteId: string, epoch: number): Behavior<SiteState, SiteMsg> {
  const pushConfig = (s: SiteState) => s.session?.send({ v: PROTOCOL_VERSION, type: 'config', targets: s.targets });
  const hub = () => {
    const h = deps.wireguard();
    return 'unavailable' in h ? undefined : h;
  };
  /**
   * Drops the site's peer from this node's device, if the device has one for it. Asked of the
   * device's side, not of this state: a restarted actor has lost its memory of the peer.
   */
  const withdraw = async (s: SiteState): Promise<SiteState> => {
    await hub()?.withdraw(siteId);
    return { ...s, wireguard: false };
  };
  /** The register reply's `wireguard`: an offer, a coded refusal, or nothing for a websocket site. */
  const offerWireGuard = async (publicKey: string): Promise<WireGuardOffer | { refused: { code: string; message: string } }> => {
    const h = deps.wireguard();
    if ('unavailable' in h) return { refused: { code: h.unavailable.code, message: h.unavailable.message } };
    try {
      return await h.offer(siteId, publicKey);
    } catch (err) {
      if (err instanceof ClusterError) return { refused: { code: err.code, message: err.message } };
      throw err;
    }
  };
  return {
    async init() {
      const site = await load(deps.db, siteId);
      deps.online?.(false); // a restarted actor has lost its session
      return { session: undefined, sessionGeneration: 0, connectedSince: undefined, transport: undefined, wireguard: false, targets: site?.targets ?? [], generation: site?.generation ?? null, siteTransport: site?.transport ?? 'websocket', health: new Map() };
    },
    async receive(state, msg, ctx) {
      switch (msg.type) {
        case 'attach': {
          // A deleted site, or a token issued before the secret was rotated: refused.
          if (state.generation === null || msg.generation < state.generation) {
            msg.session.close(CLOSE.unauthenticated.code, CLOSE.unauthenticated.reason);
            ctx.reply(false);
            return state;
          }
          if (state.session && state.session.id !== msg.session.id) state.session.close(CLOSE.superseded.code, CLOSE.superseded.reason);
          const wireguard = msg.wireguardKey !== undefined && state.siteTransport === 'wireguard' ? await offerWireGuard(msg.wireguardKey) : undefined;
          const offered = wireguard !== undefined && !('refused' in wireguard);
          let next: SiteState = { ...state, session: msg.session, sessionGeneration: msg.generation, connectedSince: deps.clock.now(), transport: msg.wireguardKey === undefined ? 'websocket' : undefined };
          next = offered ? { ...next, wireguard: true } : await withdraw(next);
          const standby = deps.standbyAdvice?.(siteId);
          msg.session.send({ v: PROTOCOL_VERSION, type: 'registered', siteId, node: deps.nodeId, epoch, role: 'primary', ...(wireguard ? { wireguard } : {}), ...(standby ? { standby } : {}) });
          pushConfig(next);
          deps.online?.(true); // last-seen is written in the node's next batch
          await deps.publishSession(siteId, { node: deps.nodeId, since: next.connectedSince!, ...(next.transport ? { transport: next.transport } : {}) });
          ctx.reply({ wireguard: offered ? wireguard : undefined });
          return next;
        }
        case 'detach': {
          const current = state.session?.id === msg.sessionId;
          if (current) {
            deps.online?.(false);
            await deps.publishSession(siteId, null);
          }
          // True: no session is left here, so the actor may go (a refused or ended one was the last).
          ctx.reply(current || state.session === undefined);
          return current ? withdraw({ ...state, session: undefined, connectedSince: undefined, transport: undefined }) : state;
        }
        case 'data-plane': {
          if (state.session?.id !== msg.sessionId) return state;
          const next = msg.transport === 'websocket' ? await withdraw({ ...state, transport: 'websocket' }) : { ...state, transport: msg.transport };
          await deps.publishSession(siteId, { node: deps.nodeId, since: next.connectedSince!, transport: msg.transport });
          return next;
        }
        case 'health': {
          const known = new Set(state.targets.map((t) => t.id));
          const health = new Map(state.health);
          const ours = msg.targets.filter((t) => known.has(t.id)); // ignore targets not ours
          for (const t of ours) health.set(t.id, t.healthy);
          if (ours.length) await deps.publishHealth(siteId, ours);
          return { ...state, health };
        }
        case 'config-changed': {
          const site = await load(deps.db, siteId);
          const next = { ...state, targets: site?.targets ?? [], generation: site?.generation ?? null, siteTransport: site?.transport ?? state.siteTransport };
          // Deleted, or its secret rotated since this connection's token: the connection ends
          // now (the connector needs the new secret to come back).
          if (next.session && (next.generation === null || next.sessionGeneration < next.generation)) {
            next.session.close(CLOSE.unauthenticated.code, CLOSE.unauthenticated.reason);
            deps.online?.(false);
            await deps.publishSession(siteId, null);
            return withdraw({ ...next, session: undefined, connectedSince: undefined, transport: undefined });
          }
          // The transport changed: the connector registers again and gets the other one.
          if (next.session && next.siteTransport !== state.siteTransport) {
            next.session.close(CLOSE.transportChanged.code, CLOSE.transportChanged.reason);
            return next;
          }
          pushConfig(next);
          return next;
        }
        case 'standby':
          // Only while the site is online here, and never under a token from before a rotation.
          ctx.reply(state.session !== undefined && state.generation !== null && msg.generation >= state.generation);
          return state;
        case 'status':
          ctx.reply({
            node: deps.nodeId,
            epoch,
            connectedSince: state.connectedSince ?? null,
            transport: state.transport ?? null,
            // A device that does not answer (wireguard-go restarting) leaves the stats out, never the actor down.
            wireguard: state.wireguard ? await (hub()?.stats(siteId).catch(() => null) ?? null) : null,
            targets: state.targets.map((t) => ({ id: t.id, healthy: state.health.get(t.id) ?? null })),
          });
          return state;
        default:
          return unknownMessage(msg);
      }
    },
    async stopped(state) {
      deps.online?.(false);
      // This node fenced itself and will be back within a second or so: the connection stays,
      // and the node attaches it to a new actor when it rejoins (gateways/connector/control.ts),
      // instead of sending every connector here to reconnect at once on top of what made the
      // node miss its lease. Not a WireGuard data plane: its peer goes with the actor.
      if (deps.fenced?.() && state?.session && !state.wireguard && state.transport !== 'wireguard') return;
      // Not at once: a tunnel being handed over (the node draining, the site moving) still
      // carries streams in flight for a moment, as a retiring WebSocket does.
      hub()?.withdrawLater(siteId, TUNNEL_RETIRE_MS);
      // Stopped because another node took the site, or this node is leaving: the connector
      // reconnects (to the newest owner, or any other node).
      state?.session?.close(CLOSE.superseded.code, CLOSE.superseded.reason);
    },
  };
}
