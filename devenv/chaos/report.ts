// Figures of a chaos run, computed from what it recorded (pure functions, no I/O).
import type { NetworkMode } from './network.ts';
import type { RequestSample } from './traffic.ts';

/**
 * `valkey-failover`: SIGKILL the Valkey primary (Sentinel promotes the replica), start it again after the hold.
 * The network modes (`cluster up --netns`): see network.ts.
 */
export type Mode = 'kill' | 'stop' | 'restart' | 'valkey-failover' | NetworkMode;

/** What a network fault showed, besides the outage every disruption is charged with. */
export interface FaultFindings {
  /** How long DNS on the reachable nodes kept naming a node clients could not reach (null: it was not named). */
  dnsFollowMs: number | null;
  /** The node held no lease at some point of the fault (null: not watched, the fault does not cost it the lease). */
  fenced: boolean | null;
  /** From healing until the node held its lease again. */
  rejoinedMs: number | null;
}

export interface ChaosEvent {
  n: number;
  mode: Mode;
  node: string;
  /** ms since the run began */
  at: number;
  /** how long the node stayed killed or frozen (0 for restart) */
  holdMs: number;
  /** actors the node ran just before */
  actors: number;
  /** until every one of them ran again (elsewhere, or on the node once back); null: not within the wait */
  recoveredMs: number | null;
  /** until the node itself was ready again */
  backMs: number;
  fault?: FaultFindings;
}

export interface Outage {
  /** start of the first failed request (ms since the run began) */
  from: number;
  /** when the first failure was seen: the end of the first failed request (a timeout ends at its deadline) */
  seenAt: number;
  /** start of the next successful request, or the end of the traffic */
  to: number;
  failed: number;
}

/** Runs of consecutive failed requests, in start order. */
export function outages(samples: RequestSample[], endAt: number): Outage[] {
  const sorted = [...samples].sort((a, b) => a.at - b.at);
  const out: Outage[] = [];
  let open: Outage | undefined;
  for (const s of sorted) {
    if (!s.ok) {
      open ??= { from: s.at, seenAt: s.at + s.ms, to: s.at, failed: 0 };
      open.seenAt = Math.min(open.seenAt, s.at + s.ms);
      open.failed++;
    } else if (open) {
      open.to = s.at;
      out.push(open);
      open = undefined;
    }
  }
  if (open) out.push({ ...open, to: endAt });
  return out;
}

/**
 * The spans (request outages, actor gaps) charged to `events[i]`: those `when` places while it
 * was the latest disruption. Outages go by when their first failure was seen, not when that
 * request started: one sent just before a node froze fails because of the freeze.
 */
export function chargedTo<T>(events: ChaosEvent[], spans: T[], i: number, when: (s: T) => number): T[] {
  const from = events[i]!.at;
  const to = events[i + 1]?.at ?? Infinity;
  return spans.filter((s) => when(s) >= from && when(s) < to);
}

/** The longest span, 0 for none. */
export const longest = (spans: Array<{ from: number; to: number }>): number => Math.max(0, ...spans.map((x) => x.to - x.from));

/** The p-th percentile (nearest rank) of `xs`; 0 for none. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A small seeded generator (mulberry32), so `--seed` replays the same victims and holds. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const fmtS = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
