// Work that may wait while sites move (supervisors/site-news.ts): items are collected and run
// together once no site has moved for `quietMs`, or `capMs` after the first item at the
// latest. In a reconnect storm every site's move is announced, and each announcement does
// the urgent part of the work; what is batched here is either a floor under lost news (the
// routes still naming a gone node) or a refinement the storm would redo many times over (a
// zone's records narrowed to the nodes now holding its sites, each change a serial written
// to PostgreSQL).
import type { Clock } from '../core/clock.ts';
import { quietWait } from '../core/quiet-wait.ts';

export interface QuietBatchOptions<T> {
  clock: Clock;
  /** How long since a site last moved (supervisors/site-news.ts). */
  quietForMs(): number;
  /** How long without a site move before the batch runs. */
  quietMs: number;
  /** The latest the batch runs after its first item, news or not. */
  capMs: number;
  /** The first look after the first item (then as long as the quiet rule says). @default quietMs */
  firstLookMs?: number;
  run(items: T[]): void;
}

export class QuietBatch<T> {
  readonly #o: QuietBatchOptions<T>;
  readonly #pending = new Set<T>();
  #deadline = 0;
  #timer: { cancel(): void } | undefined;

  constructor(o: QuietBatchOptions<T>) {
    this.#o = o;
  }

  add(items: Iterable<T>) {
    const was = this.#pending.size;
    for (const item of items) this.#pending.add(item);
    if (was > 0 || this.#pending.size === 0) return;
    this.#deadline = this.#o.clock.now() + this.#o.capMs;
    this.#arm(this.#o.firstLookMs ?? this.#o.quietMs);
  }

  stop() {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#pending.clear();
  }

  #arm(ms: number) {
    this.#timer?.cancel();
    this.#timer = this.#o.clock.setTimeout(() => this.#fire(), Math.max(0, Math.min(ms, this.#deadline - this.#o.clock.now())));
  }

  #fire() {
    this.#timer = undefined;
    const wait = quietWait(this.#o.quietForMs(), this.#o.quietMs, this.#o.clock.now(), this.#deadline);
    if (wait > 0) return this.#arm(wait);
    const items = [...this.#pending];
    this.#pending.clear();
    this.#o.run(items);
  }
}
