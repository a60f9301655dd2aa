// One run at a time of a pass that reads the world afresh (a membership reconciliation, a
// placement pass): asked while a run is on, it runs once more after it, however often it was
// asked, so news that came after the running pass had read is never left for a timer.

export class SerialRuns {
  #running: Promise<void> | undefined;
  #again = false;

  /** `more()` false stops the reruns (the owner is stopping). */
  constructor(
    private readonly work: () => Promise<void>,
    private readonly more: () => boolean = () => true,
  ) {}

  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await this.work();
      } while (this.#again && this.more());
    })().finally(() => (this.#running = undefined));
    return this.#running;
  }

  /** The run in progress, if any (to wait for it when stopping). */
  get current(): Promise<void> | undefined {
    return this.#running;
  }
}
