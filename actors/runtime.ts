// Our actor interface over nact. The rest of the code speaks this module's types only:
// spawn, send, ask (with a timeout), stop, and an inspection stream. nact gives each actor a
// mailbox processed one message at a time; on top of it we add asynchronous init, replies,
// a restart budget with backoff (nact restarts at once and forever) and draining stops.
import { EventEmitter } from 'node:events';
import nact from 'nact';
import { systemClock, type Clock } from '../core/clock.ts';
import { actorKey } from '../protocol/actor-messages.ts';
import { ClusterError, isClusterError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { RestartBudget, type RestartPolicyOptions } from '../supervisors/restart-policy.ts';

export interface ActorContext<M> {
  readonly kind: string;
  readonly id: string;
  /** Fencing epoch of this incarnation of the actor (0 for unowned local actors). */
  readonly epoch: number;
  readonly log: Logger;
  /** Sends to this actor itself (timers, follow-ups). */
  readonly self: (msg: M) => void;
  /** Answers the ask being processed (no-op for a plain send). */
  reply(value: unknown): void;
}

export interface Behavior<S, M> {
  init(ctx: ActorContext<M>): S | Promise<S>;
  receive(state: S, msg: M, ctx: ActorContext<M>): S | Promise<S>;
  /** Called once when the actor stops for good (not on restart). */
  stopped?(state: S | undefined, ctx: ActorContext<M>): void | Promise<void>;
}

/**
 * The `default` of every receive's exhaustive switch: `msg` is `never` there, so a message
 * type added to a union and not handled fails to compile. Should one arrive anyway, the
 * asker gets CLUSTER_ERR_ACTOR_BAD_MESSAGE and the actor keeps its state (no crash).
 */
export function unknownMessage(msg: never): never {
  throw new ClusterError('CLUSTER_ERR_ACTOR_BAD_MESSAGE', `unknown message type ${JSON.stringify((msg as { type?: unknown })?.type)}`, { kind: '', id: '', reason: 'unknown type' });
}

export type InspectionEvent =
  | { type: 'spawned'; kind: string; id: string; epoch: number }
  | { type: 'failed'; kind: string; id: string; error: string }
  | { type: 'restarted'; kind: string; id: string; attempt: number; delayMs: number }
  | { type: 'escalated'; kind: string; id: string; error: string }
  | { type: 'stopped'; kind: string; id: string };

interface Envelope<M> {
  msg: M | typeof START;
  resolve?: (value: unknown) => void;
  reject?: (err: unknown) => void;
}

const START = Symbol('start');
const UNINIT = Symbol('uninit');

export interface ActorSystemOptions {
  logger: Logger;
  clock?: Clock;
  restart?: Partial<RestartPolicyOptions>;
  /** Called when an actor exhausted its restart budget and was stopped. */
  onEscalate?: (kind: string, id: string, error: unknown) => void;
}

export class LocalActor<M = unknown> {
  readonly kind: string;
  readonly id: string;
  readonly epoch: number;
  readonly #ref: nact.Ref<Envelope<M>>;
  readonly #done: Promise<void>;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #stopping = false;
  #stop: () => void;

  constructor(kind: string, id: string, epoch: number, ref: nact.Ref<Envelope<M>>, done: Promise<void>, stop: () => void) {
    this.kind = kind;
    this.id = id;
    this.epoch = epoch;
    this.#ref = ref;
    this.#done = done;
    this.#stop = stop;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  #enqueue(env: Envelope<M>) {
    if (this.#stopping) throw new ClusterError('CLUSTER_ERR_ACTOR_NOT_HERE', `${this.kind}/${this.id} is stopping here`, { kind: this.kind, id: this.id });
    this.#inFlight++;
    nact.dispatch(this.#ref, env);
  }

  /** @internal the mailbox processed one envelope. */
  settled() {
    this.#inFlight--;
    if (this.#inFlight === 0) this.#drained?.();
  }

  send(msg: M): void {
    this.#enqueue({ msg });
  }

  ask<R = unknown>(msg: M, timeoutMs: number): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => reject(new ClusterError('CLUSTER_ERR_ACTOR_ASK_TIMEOUT', `${this.kind}/${this.id} did not answer in ${timeoutMs}ms`, { kind: this.kind, id: this.id, timeoutMs })), timeoutMs);
      this.#enqueue({
        msg,
        resolve: (v) => (clearTimeout(timer), resolve(v as R)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  /** @internal */
  start() {
    this.#inFlight++;
    nact.dispatch(this.#ref, { msg: START });
  }

  /**
   * Stops taking messages, lets the mailbox drain (up to `drainMs`), then stops the actor.
   * Messages that arrive meanwhile get CLUSTER_ERR_ACTOR_NOT_HERE, so senders re-resolve.
   */
  async stop(drainMs = 2000): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      if (this.#inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, drainMs);
          this.#drained = () => (clearTimeout(timer), resolve());
        });
      }
      this.#stop();
    }
    await this.#done;
  }
}

export class ActorSystem {
  readonly events = new EventEmitter();
  readonly #system: nact.ActorSystemRef;
  readonly #opts: ActorSystemOptions;
  readonly #clock: Clock;
  readonly #actors = new Map<string, LocalActor<any>>();
  /**
   * nact's own name for an unnamed actor is a random 32-bit number, and a name still in use
   * makes its spawn throw: with thousands of actors a node drew a taken one now and then (a
   * 10,000-site run: "child actor of name anonymous-2098455385 already exists", a placement
   * pass failed). Ours are numbered, never twice in this system's life.
   */
  #spawned = 0;

  constructor(opts: ActorSystemOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#system = nact.start();
  }

  #emit(e: InspectionEvent) {
    this.events.emit('event', e);
  }

  get(kind: string, id: string): LocalActor<any> | undefined {
    return this.#actors.get(actorKey(kind, id));
  }

  list(kind?: string): Array<{ kind: string; id: string; epoch: number }> {
    return [...this.#actors.values()].filter((a) => !kind || a.kind === kind).map((a) => ({ kind: a.kind, id: a.id, epoch: a.epoch }));
  }

  count(kind?: string): number {
    if (!kind) return this.#actors.size;
    let n = 0;
    for (const a of this.#actors.values()) if (a.kind === kind) n++;
    return n;
  }

  spawn<S, M>(kind: string, id: string, behavior: Behavior<S, M>, opts: { epoch?: number } = {}): LocalActor<M> {
    const key = actorKey(kind, id);
    if (this.#actors.has(key)) throw new ClusterError('CLUSTER_ERR_ACTOR_ALREADY_RUNNING', `${key} is already running here`, { kind, id });
    const epoch = opts.epoch ?? 0;
    const log = this.#opts.logger.child({ actor: kind, actorId: id, epoch });
    const budget = new RestartBudget(this.#opts.restart);
    let actor!: LocalActor<M>;
    let current: Envelope<M> | undefined;
    let lastState: S | undefined;
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const ctx: ActorContext<M> = {
      kind,
      id,
      epoch,
      log,
      self: (msg) => {
        if (!actor.stopping) actor.send(msg);
      },
      reply: (value) => {
        current?.resolve?.(value);
        if (current) current.resolve = undefined;
      },
    };

    const fn = async (state: S | typeof UNINIT, env: Envelope<M>): Promise<S | typeof UNINIT> => {
      current = env;
      try {
        let s = state;
        if (s === UNINIT) s = await behavior.init(ctx);
        if (env.msg !== START) s = await behavior.receive(s, env.msg as M, ctx);
        env.resolve?.(undefined); // an ask the behaviour did not answer resolves empty
        lastState = s;
        return s;
      } catch (err) {
        if (isClusterError(err, 'CLUSTER_ERR_ACTOR_BAD_MESSAGE') && state !== UNINIT) {
          // Refused, not failed: the message changes nothing, and the actor keeps its state.
          env.reject?.(new ClusterError('CLUSTER_ERR_ACTOR_BAD_MESSAGE', err.message, { ...err.fields, kind, id }));
          return state;
        }
        env.reject?.(err);
        this.#emit({ type: 'failed', kind, id, error: String((err as Error)?.message ?? err) });
        throw err;
      } finally {
        current = undefined;
        actor.settled();
      }
    };

    const ref = nact.spawn(this.#system, fn as any, `actor-${++this.#spawned}`, {
      initialState: UNINIT,
      onCrash: async (_msg: unknown, err: unknown, sctx: any) => {
        if (actor.stopping) return sctx.stop; // failing while being stopped is not a crash to supervise
        const dependencyDown = isClusterError(err, 'CLUSTER_ERR_VALKEY_UNAVAILABLE') || isClusterError(err, 'CLUSTER_ERR_DB_UNAVAILABLE');
        const decision = budget.onFailure(this.#clock.now(), dependencyDown);
        if (decision.action === 'escalate') {
          log.error({ err: String((err as Error)?.message ?? err) }, 'actor exhausted its restart budget; escalating');
          this.#emit({ type: 'escalated', kind, id, error: String((err as Error)?.message ?? err) });
          queueMicrotask(() => this.#opts.onEscalate?.(kind, id, err));
          this.#forget(key, actor);
          return sctx.stop;
        }
        log.warn({ err: String((err as Error)?.message ?? err), attempt: decision.attempt, delayMs: decision.delayMs }, 'actor crashed; restarting after backoff');
        await this.#clock.sleep(decision.delayMs);
        this.#emit({ type: 'restarted', kind, id, attempt: decision.attempt, delayMs: decision.delayMs });
        queueMicrotask(() => actor.start()); // re-initialise even if no message arrives
        return sctx.reset;
      },
      afterStop: async () => {
        try {
          await behavior.stopped?.(lastState, ctx);
        } catch (err) {
          log.warn({ err }, 'actor stop hook failed');
        } finally {
          this.#forget(key, actor);
          this.#emit({ type: 'stopped', kind, id });
          finish();
        }
      },
    } as any);
    actor = new LocalActor<M>(kind, id, epoch, ref as any, done, () => nact.stop(ref));
    this.#actors.set(key, actor);
    this.#emit({ type: 'spawned', kind, id, epoch });
    actor.start();
    return actor;
  }

  #forget(key: string, actor: LocalActor<any>) {
    if (this.#actors.get(key) === actor) this.#actors.delete(key);
  }

  async stopAll(drainMs = 2000): Promise<void> {
    await Promise.all([...this.#actors.values()].map((a) => a.stop(drainMs)));
  }

  shutdown() {
    nact.stop(this.#system);
  }
}
