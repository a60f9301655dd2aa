// The node's V8 heap against its limit. The limit is set when the process starts
// (`--max-old-space-size`: bin/cluster and the launcher pass NODE_HEAP_MB unless NODE_OPTIONS
// names one), and it also sets how much garbage V8 lets pile up between full collections: on
// a large machine V8's own default (a quarter of memory) lets the heap grow to four times what
// is live, which held a node at 10,000 sites at 550-690 MB resident instead of 380-430.
// A limit too close to what is live ends the process out of memory, so after each full
// collection (when what is still used is what is live) the node compares the two and says so
// past `warnAt`, at most once per `everyMs`, and exports the ratio.
import { PerformanceObserver, constants } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { Logger } from './log.ts';

/** The heap limit the node's launchers set (MB) unless NODE_OPTIONS names one; bin/cluster says the same (a test checks). */
export const NODE_HEAP_MB = 1024;

/** `--max-old-space-size=NODE_HEAP_MB`, unless `nodeOptions` (NODE_OPTIONS) sets the limit itself. */
export function defaultHeapArgs(nodeOptions: string | undefined): string[] {
  return /--max-old-space-size\b/.test(nodeOptions ?? '') ? [] : [`--max-old-space-size=${NODE_HEAP_MB}`];
}

export interface HeapWatchOptions {
  log: Pick<Logger, 'info' | 'warn'>;
  /** Live share of the limit past which the node warns. @default 0.7 */
  warnAt?: number;
  /** @default 300_000 */
  everyMs?: number;
  /** For tests; V8's figures otherwise. */
  stats?: () => { used: number; limit: number };
  now?: () => number;
}

export class HeapWatch {
  readonly #o: Required<Omit<HeapWatchOptions, 'log'>> & Pick<HeapWatchOptions, 'log'>;
  #observer: PerformanceObserver | undefined;
  #warnedAt = -Infinity;
  /** Live heap over the limit after the last full collection (0 before one). */
  liveRatio = 0;

  constructor(o: HeapWatchOptions) {
    this.#o = {
      warnAt: 0.7,
      everyMs: 300_000,
      stats: () => {
        const s = v8.getHeapStatistics();
        return { used: s.used_heap_size, limit: s.heap_size_limit };
      },
      now: () => Date.now(),
      ...o,
    };
  }

  /** Reads the heap as a full collection left it: true when it warned. */
  afterFullCollection(): boolean {
    const { used, limit } = this.#o.stats();
    this.liveRatio = used / limit;
    if (this.liveRatio < this.#o.warnAt || this.#o.now() - this.#warnedAt < this.#o.everyMs) return false;
    this.#warnedAt = this.#o.now();
    const mb = (n: number) => Math.round(n / 1048576);
    this.#o.log.warn({ liveMb: mb(used), limitMb: mb(limit) }, `live heap at ${Math.round(this.liveRatio * 100)} % of the limit after a full collection; raise it (NODE_OPTIONS=--max-old-space-size=MB) before the node runs out of memory`);
    return true;
  }

  start(): this {
    if (this.#observer) return this;
    this.#o.log.info({ limitMb: Math.round(this.#o.stats().limit / 1048576) }, 'V8 heap limit');
    this.#observer = new PerformanceObserver((list) => {
      if (list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) this.afterFullCollection();
    });
    this.#observer.observe({ entryTypes: ['gc'] });
    return this;
  }

  stop(): void {
    this.#observer?.disconnect();
    this.#observer = undefined;
  }
}
