// Watches where every actor runs while `cluster chaos` breaks nodes: samples each node's
// actor list over its peer port (all nodes at once, a short timeout so a frozen node simply
// drops out of the sample), every `intervalMs`.
//
// A duplicate is an actor listed by two answering nodes in two consecutive samples. One
// sample alone is not proof: the parallel reads are not one instant, and a handoff in
// between could show an actor on both sides of it. Two samples at least `intervalMs` apart
// can: no handoff or failover keeps an actor on its old node once the new one runs it.
//
// A gap is a span in which a watched actor ran on no answering node with a current lease:
// its real downtime, as opposed to the time a handoff took while the actor kept running. It
// is measured from the first sample that missed the actor to the first that saw it again, so
// its resolution is the sampling interval (a shorter gap may go unseen).
import { inspectNode } from '../peer-client.ts';
import { actorKey } from '../../protocol/actor-messages.ts';

export interface ObservedNode {
  id: string;
  peer: string;
}

export interface Sample {
  at: number;
  /** Nodes that answered, with the actors ("kind/id") each runs. */
  byNode: Map<string, Set<string>>;
  /** Nodes that answered holding a current lease (a node just thawed lists actors it is about to stop). */
  healthy: Set<string>;
}

/** How long one actor was listed by two nodes (from the first of two samples to the last). */
export interface DuplicateSpan {
  what: string;
  from: number;
  to: number;
}

export interface Gap {
  actor: string;
  /** the first sample that found it running nowhere (ms since the epoch) */
  from: number;
  /** the first sample that found it running again */
  to: number;
}

export class ActorObserver {
  /** Confirmed duplicates: "kind/id on node-a+node-b". */
  readonly duplicates = new Set<string>();
  /** Each confirmed duplicate's span, closed when a sample no longer shows it. */
  readonly duplicateSpans: DuplicateSpan[] = [];
  /** Candidate -> the sample that first showed it. */
  readonly #candidateSince = new Map<string, number>();
  /** Closed gaps of the watched actors, in the order they closed. */
  readonly gaps: Gap[] = [];
  /** Watched actor -> when the sample that first missed it was taken. */
  readonly #missing = new Map<string, number>();
  #watched = new Set<string>();
  latest: Sample | undefined;
  readonly #o: { nodes: ObservedNode[]; clusterSecret: string; intervalMs: number; timeoutMs: number; localAddress?: string };
  readonly #waiters = new Set<(s: Sample) => void>();
  #candidates = new Set<string>();
  #running = false;
  #loop: Promise<void> | undefined;

  /** `localAddress`: watch from this address (with `cluster up --netns`, the one no network fault drops). */
  constructor(opts: { nodes: ObservedNode[]; clusterSecret: string; intervalMs?: number; timeoutMs?: number; localAddress?: string }) {
    this.#o = { intervalMs: 250, timeoutMs: 500, ...opts };
  }

  start() {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        const started = Date.now();
        this.record(await this.sample());
        await new Promise((r) => setTimeout(r, Math.max(0, this.#o.intervalMs - (Date.now() - started))));
      }
    })();
  }

  async stop() {
    this.#running = false;
    await this.#loop;
  }

  /** From the next sample on, records the gaps of these actors ("kind/id"). */
  watch(actors: Iterable<string>) {
    this.#watched = new Set(actors);
    this.#missing.clear();
  }

  /** Duplicates still showing in the latest sample, closed at `at`. */
  openDuplicates(at: number): DuplicateSpan[] {
    return [...this.#candidates].filter((c) => this.duplicates.has(c)).map((what) => ({ what, from: this.#candidateSince.get(what)!, to: at }));
  }

  /** Gaps still open (actors running nowhere in the latest sample), closed at `at`. */
  openGaps(at: number): Gap[] {
    return [...this.#missing].map(([actor, from]) => ({ actor, from, to: at }));
  }

  async sample(): Promise<Sample> {
    const at = Date.now();
    const views = await Promise.all(this.#o.nodes.map((n) => inspectNode({ peer: n.peer, nodeId: n.id, clusterSecret: this.#o.clusterSecret, localAddress: this.#o.localAddress }, this.#o.timeoutMs).catch(() => null)));
    const byNode = new Map<string, Set<string>>();
    const healthy = new Set<string>();
    for (const v of views) {
      if (!v) continue;
      byNode.set(v.node, new Set(v.actors.map((a) => actorKey(a.kind, a.id))));
      if (v.leaseHealthy) healthy.add(v.node);
    }
    return { at, byNode, healthy };
  }

  /** Takes one sample into the duplicate check and the gaps (the sampling loop calls it). */
  record(s: Sample) {
    const where = new Map<string, string[]>();
    for (const [node, actors] of s.byNode) for (const a of actors) where.set(a, [...(where.get(a) ?? []), node]);
    const candidates = new Set<string>();
    for (const [a, nodes] of where) if (nodes.length > 1) candidates.add(`${a} on ${nodes.sort().join('+')}`);
    for (const c of candidates) {
      if (this.#candidates.has(c)) this.duplicates.add(c);
      else this.#candidateSince.set(c, s.at);
    }
    for (const c of this.#candidates) {
      if (candidates.has(c)) continue;
      const from = this.#candidateSince.get(c)!;
      this.#candidateSince.delete(c);
      if (this.duplicates.has(c)) this.duplicateSpans.push({ what: c, from, to: this.latest!.at });
    }
    this.#candidates = candidates;
    for (const a of this.#watched) {
      const running = (where.get(a) ?? []).some((node) => s.healthy.has(node));
      const since = this.#missing.get(a);
      if (!running && since === undefined) this.#missing.set(a, s.at);
      else if (running && since !== undefined) {
        this.#missing.delete(a);
        this.gaps.push({ actor: a, from: since, to: s.at });
      }
    }
    this.latest = s;
    for (const w of this.#waiters) w(s);
  }

  /** Calls `fn` with every sample from now on; returns the function that stops it. */
  onSample(fn: (s: Sample) => void): () => void {
    this.#waiters.add(fn);
    return () => this.#waiters.delete(fn);
  }

  /** Resolves with the first sample in which `check` holds (or undefined after `timeoutMs`). */
  until(check: (s: Sample) => boolean, timeoutMs: number): Promise<Sample | undefined> {
    if (this.latest && check(this.latest)) return Promise.resolve(this.latest);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        resolve(undefined);
      }, timeoutMs);
      const waiter = (s: Sample) => {
        if (!check(s)) return;
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve(s);
      };
      this.#waiters.add(waiter);
    });
  }
}

/** Every one of `actors` runs on some answering node with a current lease in `s` (`except` not counted). */
export function allRunning(s: Sample, actors: Iterable<string>, except?: string): boolean {
  const running = new Set<string>();
  for (const [node, set] of s.byNode) if (s.healthy.has(node) && node !== except) for (const a of set) running.add(a);
  for (const a of actors) if (!running.has(a)) return false;
  return true;
}
