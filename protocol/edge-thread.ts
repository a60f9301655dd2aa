// Messages between a node's main thread and its ingress worker (supervisors/edge-thread.ts
// and supervisors/edge-worker.ts; docs/data-plane-worker.md). One MessagePort, in order.
// Connections cross as descriptors (core/socket-handover.ts: `fd` and the bytes read ahead
// of it); nothing else of a tunnel or a client's traffic does.
import type { HandedSocket } from '../core/socket-handover.ts';
import type { Snapshot } from '../persistence/snapshots.ts';
import type { Route } from './route.ts';

/** A coded failure, as it crossed the thread boundary (ClusterError's code, where it had one). */
export interface ThreadError {
  code?: string;
  message: string;
  fields?: unknown;
}

export type ToWorker =
  /** A tunnel for the site is coming on this session (TunnelRegistry.expect). */
  | { type: 'expect'; siteId: string; sessionId: string }
  /** The site's tunnel: over a connection handed to the worker, or over the control WebSocket's frames (asked for with `frames` when the first stream needs them). */
  | { type: 'set'; siteId: string; sessionId: string; standby: boolean; rawStreams: boolean; link: HandedSocket | 'frames' }
  | { type: 'promote'; siteId: string; sessionId: string }
  | { type: 'delete'; siteId: string; sessionId: string }
  /** Out of use; answered `retired` once its streams in flight finished. */
  | { type: 'retire'; id: number; siteId: string; sessionId: string }
  /** A connection that upgraded to RAW_UPGRADE naming `key` (answered by the worker: 101, or refused). */
  | { type: 'raw'; key: string; connection: HandedSocket }
  /** A connection a peer forwarded to this node. */
  | { type: 'forwarded'; resourceId: string; targetId: string; connection: HandedSocket }
  /** Answer to the worker's `forward`: the peer took it (the worker's end of `fd` now reaches it) or not. */
  | { type: 'forward-result'; id: number; error?: ThreadError }
  /** The traffic view: members traffic may go to, and those suspected (sent on every change). */
  | { type: 'traffic'; live: string[]; suspected: string[] }
  /** A peer was just suspected: pooled connections through it are dropped. */
  | { type: 'suspect'; node: string }
  /** A change of this kind was made in the cluster (access reads revocations again). */
  | { type: 'changed'; kind: string }
  | { type: 'metrics'; id: number }
  /** Stop: listeners first; answered `closed`. */
  | { type: 'close'; id: number }
  /** The answer to the worker's `ask`. */
  | { type: 'answer'; id: number; value?: unknown; error?: ThreadError }
  /** Route snapshots as the main thread's mirror took them in (the worker's mirror applies the newer). */
  | { type: 'route-snapshots'; snapshots: Array<Snapshot<Route>> }
  /** The issued certificate of this hostname changed. */
  | { type: 'certificate-changed'; hostname: string };

/** What the worker asks the main thread for (it holds no Valkey or PostgreSQL connection). */
export type WorkerQuestion =
  | { what: 'route-snapshots' }
  | { what: 'certificate'; hostname: string }
  | { what: 'certificate-hostnames' }
  /** The access decision for a request to a protected resource (gateways/access/guard.ts). */
  | { what: 'check'; head: { method: string | undefined; url: string | undefined; headers: Record<string, string | string[] | undefined> }; resourceId: string; proto: 'http' | 'https'; client: string };

export type FromWorker =
  /** The ingress listens (or could not start: `error`, and the node fails its start). */
  | { type: 'started'; error?: ThreadError }
  /** The site's tunnel died while still this session's: the control connection must close. */
  | { type: 'lost'; siteId: string; sessionId: string; why?: string }
  /** The first stream of a tunnel over frames: relay the control WebSocket's frames to `end`. */
  | { type: 'frames'; siteId: string; sessionId: string; end: HandedSocket }
  /** A connection for a site whose tunnel is on `node`: open a forward there and relay it to `end`. */
  | { type: 'forward'; id: number; node: string; resourceId: string; targetId: string; header: Uint8Array; timeoutMs: number | undefined; end: HandedSocket }
  | { type: 'retired'; id: number }
  | { type: 'metrics'; id: number; text: string }
  | { type: 'closed'; id: number }
  | ({ type: 'ask'; id: number } & WorkerQuestion)
  /** A resource's listener problem to record (null: it listens now). */
  | { type: 'problem'; resourceId: string; problem: string | null }
  /** A TLS connection to the portal, at its ClientHello (`head`: what was read of it): the main thread serves the portal. */
  | { type: 'portal'; connection: HandedSocket; client: string };

/** What the worker is started with (`workerData`). */
export interface EdgeWorkerData {
  edgeWorker: {
    /** The config file the node was started with (the environment is the worker's too): the worker loads the same config. */
    configFile: string | undefined;
    /** The node's config, redacted: the worker checks it loaded the same. */
    expect: string;
  };
}
