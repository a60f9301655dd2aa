// Work asked for many times in a short while, done once: keys added within `ms` of the first
// one are handed to `flush` together, each once, with the last value given for it; `ms` 0:
// those added in this turn of the event loop (everything read from the sockets in it), at no
// added delay. For recomputations woken by announcements that come in bursts (a reconnect
// storm announces a site's move, its cleared standby and its first health report together).
export class Coalesced<K, V = undefined> {
  readonly #due = new Map<K, V>();
  /** Cancels the pending flush; set while one is pending. */
  #cancel: (() => void) | undefined;

  constructor(
    readonly ms: number,
    readonly flush: (due: Map<K, V>) => void,
  ) {}

  add(key: K, value: V): void {
    this.#due.set(key, value);
    if (this.#cancel) return;
    const run = () => {
      this.#cancel = undefined;
      const due = new Map(this.#due);
      this.#due.clear();
      this.flush(due);
    };
    if (this.ms > 0) {
      const timer = setTimeout(run, this.ms);
      this.#cancel = () => clearTimeout(timer);
    } else {
      const immediate = setImmediate(run);
      this.#cancel = () => clearImmediate(immediate);
    }
  }

  /** Drops what is due without flushing it. */
  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
    this.#due.clear();
  }
}
