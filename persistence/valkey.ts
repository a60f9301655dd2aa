// Valkey access through ioredis: one command connection and one subscriber connection per
// node, both reconnecting forever with capped, jittered backoff. Commands never queue while
// disconnected: a caller gets CLUSTER_ERR_VALKEY_UNAVAILABLE at once (or after
// commandTimeout), never a hang and never a quiet fallback to local memory. The command
// timeout is ours, not ioredis's: a stall of this process must not time out every command
// whose reply already arrived, nor a busy process every command queued behind replies it is
// still reading (core/io-deadline.ts).
import { Redis, type RedisOptions } from 'ioredis';
import { ClusterError } from '../core/errors.ts';
import { withProgressDeadline } from '../core/io-deadline.ts';
import { CHANNELS, type ChannelMessage, type ChannelName } from '../protocol/channels.ts';
import { fastParse } from '../protocol/fast-parse.ts';
import type { Logger } from '../core/log.ts';
import type { Secret } from '../core/secret.ts';
import { Keyspace } from './keys.ts';

export type ValkeyState = 'connecting' | 'ready' | 'reconnecting' | 'closed';

export interface ValkeyOptions {
  url: Secret;
  clusterName: string;
  connectTimeout: number;
  commandTimeout: number;
  logger: Logger;
  /** Sentinels to ask for the current primary (and to follow when it fails over); `url` then gives the credentials only. */
  sentinels?: ReadonlyArray<{ host: string; port: number }>;
  masterName?: string;
}

/** ioredis options for the URL, or, with Sentinels, for the primary they name (credentials from the URL). */
function target(url: string, o: ValkeyOptions): RedisOptions | string {
  if (!o.sentinels?.length) return url;
  const u = new URL(url);
  return {
    sentinels: o.sentinels.map((s) => ({ host: s.host, port: s.port })),
    name: o.masterName ?? 'cluster',
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number(u.pathname.slice(1)) || 0,
    // Subscribe to Sentinel's +switch-master: follow a promotion at once, not at the next reconnect.
    failoverDetector: true,
    sentinelRetryStrategy: (attempt: number) => backoff(attempt),
  };
}


function backoff(attempt: number): number {
  const cap = Math.min(2000, 50 * 2 ** Math.min(attempt, 6));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

export class Valkey {
  readonly keys: Keyspace;
  /** Command connection. Use through `call()` so failures arrive as coded errors. */
  readonly cmd: Redis;
  readonly #sub: Redis;
  /**
   * The membership lease's own connection. On the command connection a renewal queued behind
   * a storm's claims and snapshots (in ioredis's write buffer and in Valkey's read of this
   * client) and came back too late: survivors of a SIGKILL fenced themselves with their
   * leases intact, which doubled the storm.
   */
  readonly #lease: Redis;
  readonly #log: Logger;
  readonly #handlers = new Map<string, { name: ChannelName; handlers: Set<(message: any) => void> }>();
  readonly #resubscribed = new Set<() => void>();
  /** True while the subscriber is connected with every channel's SUBSCRIBE confirmed: announcements reach this node. */
  #hearing = false;
  readonly #hearingWaiters = new Set<() => void>();
  /** Pub/sub messages dropped because they did not match their channel's schema. */
  droppedMessages = 0;
  #state: ValkeyState = 'connecting';
  readonly #commandTimeoutMs: number;
  /** A PING is out to tell a silent Valkey from a stall of this process. */
  #confirming = false;
  /** When each connection last read anything from Valkey or was made (ms epoch): a command waits while its connection is heard. */
  readonly #heardAt = new WeakMap<Redis, number>();

  constructor(opts: ValkeyOptions) {
    this.#commandTimeoutMs = opts.commandTimeout;
    this.keys = new Keyspace(opts.clusterName);
    this.#log = opts.logger.child({ component: 'valkey' });
    const base: RedisOptions = {
      lazyConnect: true,
      connectTimeout: opts.connectTimeout,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: backoff,
      connectionName: `${opts.clusterName}`,
    };
    const where = target(opts.url.reveal().replace(/^valkey(s?):/, 'redis$1:'), opts);
    const connect = (o: RedisOptions) => (typeof where === 'string' ? new Redis(where, o) : new Redis({ ...where, ...o }));
    // Commands issued in one turn of the loop go out in one write: a reconnect storm issues
    // thousands per turn (claims, snapshot lookups and writes), each its own syscall before.
    this.cmd = connect({ ...base, enableAutoPipelining: true });
    // The subscriber queues its subscriptions until connected; it never serves commands. It
    // subscribes again itself on each new connection (below): ioredis's own resubscription
    // leaves its promise unhandled, and a close while it was in flight (a node stopping as its
    // subscriber reconnects) ended in an unhandled rejection.
    this.#sub = connect({ ...base, enableOfflineQueue: true, autoResubscribe: false });
    this.#lease = connect({ ...base, connectionName: `${opts.clusterName}:lease` });
    this.cmd.on('ready', () => this.#setState('ready'));
    this.cmd.on('reconnecting', () => this.#setState('reconnecting'));
    this.cmd.on('error', (err) => this.#log.debug({ err: err.message }, 'valkey connection error'));
    this.#sub.on('error', (err) => this.#log.debug({ err: err.message }, 'valkey subscriber error'));
    this.#lease.on('error', (err) => this.#log.debug({ err: err.message }, 'valkey lease connection error'));
    this.#sub.on('message', (channel: string, raw: string) => this.#dispatch(channel, raw));
    for (const conn of [this.cmd, this.#lease]) {
      conn.on('connect', () => {
        this.#heardAt.set(conn, Date.now());
        conn.stream.on('data', () => this.#heardAt.set(conn, Date.now()));
      });
    }
    this.#keepConnecting(this.cmd, 'commands');
    this.#keepConnecting(this.#sub, 'subscriber');
    this.#keepConnecting(this.#lease, 'lease');
    // A connection made again means the path to Valkey is back: the others, waiting out their
    // backoff (up to 2 s), try now. A node whose lease came back a second before its
    // subscriber rejoined and attached its sites deaf to claims made meanwhile (chaos: one site
    // ran on two nodes for 250 ms); claims now wait for the subscriber, so it must not dawdle.
    for (const conn of [this.cmd, this.#sub, this.#lease]) conn.on('ready', () => this.#hurry(conn));
    this.#sub.on('close', () => (this.#hearing = false));
    let subscribedBefore = false;
    this.#sub.on('ready', () => {
      // Every known channel again (on the first connection too: SUBSCRIBE is idempotent, and
      // its answer, not the connection, is when announcements start to arrive).
      const channels = [...this.#handlers.keys()];
      const resubscribing = subscribedBefore;
      subscribedBefore = true;
      (channels.length ? this.#sub.subscribe(...channels) : Promise.resolve()).then(
        () => {
          if (this.#sub.status !== 'ready') return;
          this.#setHearing();
          // Only once the subscriptions hold: what is read again from here on cannot miss an announcement.
          if (resubscribing) for (const f of this.#resubscribed) f();
        },
        (err: Error) => this.#log.debug({ err: err.message }, 'valkey resubscription failed; the next connection tries again'),
      );
    });
  }

  #setHearing() {
    this.#hearing = true;
    for (const w of this.#hearingWaiters) w();
    this.#hearingWaiters.clear();
  }

  /**
   * Whether announcements reach this node now: its subscriber is connected and subscribed. A
   * node claiming actors while deaf would not hear another node take them (newest-wins claims
   * stop the old copy by announcement): OwnershipRegistry.claim waits for this first.
   */
  get hearing(): boolean {
    return this.#hearing;
  }

  /** Resolves once `hearing` holds; fails with CLUSTER_ERR_VALKEY_UNAVAILABLE after `timeoutMs` (a command's). */
  async untilHearing(timeoutMs = this.#commandTimeoutMs): Promise<void> {
    if (this.#hearing) return;
    if (this.#state === 'closed') throw new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', 'valkey client is closed', {});
    await new Promise<void>((resolve, reject) => {
      const heard = () => (clearTimeout(timer), resolve());
      const timer = setTimeout(() => {
        this.#hearingWaiters.delete(heard);
        reject(new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', `valkey unavailable: not subscribed within ${timeoutMs} ms`, {}));
      }, timeoutMs);
      this.#hearingWaiters.add(heard);
    });
  }

  /**
   * `ready` connected: the others still waiting out a reconnect backoff try at once. ioredis
   * has no call for it; this clears the timer it keeps for the wait (`reconnectTimeout`) and
   * connects as that timer would. Should ioredis rename it, they wait out their backoff as before.
   */
  #hurry(ready: Redis) {
    for (const conn of [this.cmd, this.#sub, this.#lease]) {
      if (conn === ready || conn.status !== 'reconnecting') continue;
      const c = conn as unknown as { reconnectTimeout?: NodeJS.Timeout | null };
      if (!c.reconnectTimeout) continue;
      clearTimeout(c.reconnectTimeout);
      c.reconnectTimeout = null;
      conn.connect().catch(() => {});
    }
  }

  /**
   * Starts a connection again when ioredis gave it up for good ('end') though nobody closed
   * it. ioredis 6 does so when a connection is told to disconnect while it asks a Sentinel
   * for the primary, and its own Sentinel failover detector does just that when
   * +switch-master arrives during a reconnect attempt: the node then ran on without commands
   * or without subscriptions (readiness saw the first, nothing the second). The subscriber
   * comes back with its subscriptions (made again on each new connection) and a
   * resubscription, so announcements missed meanwhile are recomputed.
   */
  #keepConnecting(conn: Redis, which: 'commands' | 'subscriber' | 'lease') {
    let attempt = 0;
    conn.on('ready', () => (attempt = 0));
    conn.on('end', () => {
      if (this.#state === 'closed') return;
      const delayMs = backoff(++attempt);
      this.#log.warn({ connection: which, delayMs }, 'valkey connection given up by the client; connecting again');
      setTimeout(() => {
        if (this.#state !== 'closed' && conn.status === 'end') conn.connect().catch(() => {});
      }, delayMs).unref();
    });
  }

  /**
   * Calls `f` each time the subscriber connection is made again after it was lost (Valkey
   * restarted or failed over, or dropped a slow subscriber): what was announced meanwhile
   * never arrived, so whoever acts on announcements recomputes. Returns the way to stop.
   */
  onResubscribed(f: () => void): () => void {
    this.#resubscribed.add(f);
    return () => this.#resubscribed.delete(f);
  }

  /** The subscriber connection, for its status and events (tests, diagnostics); never for commands. */
  get subscriber(): Redis {
    return this.#sub;
  }

  /** The lease's connection, for its status (tests, diagnostics); only `call(op, 'lease')` uses it. */
  get leaseConnection(): Redis {
    return this.#lease;
  }

  get state(): ValkeyState {
    return this.#state;
  }

  #setState(state: ValkeyState) {
    if (this.#state === state || this.#state === 'closed') return;
    const from = this.#state;
    this.#state = state;
    if (state === 'ready') this.#log.info({ from }, 'valkey ready');
    else this.#log.warn({ from }, `valkey ${state}`);
  }

  /** Starts connecting in the background; does not wait (start-up must not need Valkey). */
  connect(): void {
    this.cmd.connect().catch(() => {});
    this.#sub.connect().catch(() => {});
    this.#lease.connect().catch(() => {});
  }

  /**
   * Runs one Valkey operation, turning connection failures into a coded error. `via: 'lease'`
   * is for the membership lease alone; while its connection is down the command connection
   * carries it, so a lost lease connection by itself never costs a renewal.
   */
  async call<T>(op: (cmd: Redis) => Promise<T>, via: 'commands' | 'lease' = 'commands'): Promise<T> {
    if (this.#state === 'closed') throw new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', 'valkey client is closed', {});
    const conn = via === 'lease' && this.#lease.status === 'ready' ? this.#lease : this.cmd;
    try {
      // Late once nothing was heard on the connection for a command timeout (replies come in
      // order: one still queued behind replies being read is not lost), or after five in all.
      const heard = () => this.#heardAt.get(conn) ?? 0;
      return await withProgressDeadline(op(conn), this.#commandTimeoutMs, heard, 5 * this.#commandTimeoutMs, () => new Error('Command timed out'));
    } catch (err) {
      if ((err as Error)?.name === 'ReplyError') throw err; // the server answered: a bug, not an outage
      if (/timed out/i.test((err as Error)?.message ?? '')) this.#silent();
      throw new ClusterError('CLUSTER_ERR_VALKEY_UNAVAILABLE', `valkey unavailable: ${(err as Error).message}`, {}, { cause: err });
    }
  }

  /**
   * A command timed out. If nothing has come back for a whole command timeout, the path to
   * Valkey may be dropping packets (a partition, a dead switch port): the socket is still
   * "open" and TCP would retransmit into it with a doubling backoff, so after the path heals
   * the node could wait tens of seconds to hear Valkey again. Both connections are then made
   * anew; fresh connection attempts go out every few seconds until the path is back.
   * But first one PING with a fresh deadline: a Valkey busy for a moment (a slow command, a
   * fork) answers it and keeps its connections. Dropping them cost a node its subscriptions
   * and its lease renewal at once (31 times in one 10,000-site run, when this process's own
   * stalls still timed commands out; io deadlines now keep those from counting).
   */
  #silent() {
    const heardAt = this.#heardAt.get(this.cmd) ?? 0;
    if (Date.now() - heardAt < this.#commandTimeoutMs || this.#state === 'closed' || this.#confirming) return;
    this.#confirming = true;
    void this.ping(this.#commandTimeoutMs).then((answered) => {
      this.#confirming = false;
      // Once per silence, not per timed-out command: the connection counts as heard from now.
      this.#heardAt.set(this.cmd, Date.now());
      if (answered || this.#state === 'closed') return;
      this.#log.warn({ silentMs: this.#commandTimeoutMs }, 'valkey stopped answering; reconnecting');
      this.cmd.disconnect(true);
      this.#sub.disconnect(true);
      this.#lease.disconnect(true);
    });
  }

  /**
   * For readiness: the command connection answers a PING in time and the subscriber is
   * connected. A node without its subscriber serves routes and zones that no longer change.
   */
  async usable(timeoutMs: number): Promise<boolean> {
    return (await this.ping(timeoutMs)) && this.#sub.status === 'ready';
  }

  /** PING with a deadline; true when Valkey answered in time (behind a backlog still answering: see call()). */
  async ping(timeoutMs: number): Promise<boolean> {
    if (this.cmd.status !== 'ready') return false;
    const heard = () => this.#heardAt.get(this.cmd) ?? 0;
    try {
      return (await withProgressDeadline(this.cmd.ping(), timeoutMs, heard, 5 * timeoutMs, () => new Error('PING timed out'))) === 'PONG';
    } catch {
      return false;
    }
  }

  /** Publishes a JSON message on a cluster channel (name without prefix). */
  async publish<C extends ChannelName>(name: C, message: ChannelMessage<C>): Promise<number> {
    return this.call((c) => c.publish(this.keys.channel(name), JSON.stringify(message)));
  }

  /**
   * Subscribes to a cluster channel. Resubscription after a reconnect is automatic; callers
   * that cache state must also reconcile periodically, since messages sent while the
   * subscriber was away are lost (pub/sub is at-most-once).
   */
  async subscribe<C extends ChannelName>(name: C, handler: (message: ChannelMessage<C>) => void): Promise<() => Promise<void>> {
    const channel = this.keys.channel(name);
    let entry = this.#handlers.get(channel);
    if (!entry) {
      entry = { name, handlers: new Set() };
      this.#handlers.set(channel, entry);
      await this.#sub.subscribe(channel);
    }
    entry.handlers.add(handler);
    return async () => {
      const current = this.#handlers.get(channel);
      if (!current?.handlers.delete(handler) || current.handlers.size > 0) return;
      this.#handlers.delete(channel);
      if (this.#sub.status === 'ready') await this.#sub.unsubscribe(channel);
    };
  }

  #dispatch(channel: string, raw: string) {
    const entry = this.#handlers.get(channel);
    if (!entry) return;
    let message: unknown;
    try {
      message = fastParse(CHANNELS[entry.name], JSON.parse(raw));
    } catch (err) {
      this.droppedMessages++;
      this.#log.warn({ channel: entry.name, err: err instanceof SyntaxError ? 'not JSON' : (err as Error).message.slice(0, 300) }, 'dropped a malformed pub/sub message');
      return;
    }
    for (const h of entry.handlers) {
      try {
        h(message);
      } catch (err) {
        this.#log.error({ err, channel }, 'pub/sub handler failed');
      }
    }
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#handlers.clear();
    await Promise.allSettled([this.cmd.quit(), this.#sub.quit(), this.#lease.quit()]);
    this.cmd.disconnect();
    this.#sub.disconnect();
    this.#lease.disconnect();
  }
}
