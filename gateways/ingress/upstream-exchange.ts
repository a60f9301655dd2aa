// One HTTP/1.1 exchange with a target over a tunnel stream: the request head written as one
// string, the client's body streamed after it (re-chunked when it came chunked), and the
// response relayed to the client as response-parser.ts reads it, with backpressure both ways.
// Replaces Node's http client on this path (an agent, a request object and a parser wrapper
// per request cost about a quarter of the tunnel node's time).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ClusterError } from '../../core/errors.ts';
import { isHopByHop } from './request-head.ts';
import { ResponseParser, type ResponseEvents, type ResponseHead } from './response-parser.ts';

export interface UpstreamRequest {
  method: string;
  /** The whole request head (request-head.ts), written as latin1: one byte per character. */
  head: string;
  /** The client's request, when it has a body to stream (`chunked`: re-frame it so). */
  body?: { from: IncomingMessage; chunked: boolean };
  /** Longest wait for the response head. */
  timeoutMs: number;
}

export type ExchangeOutcome =
  /**
   * The response went to the client whole (`finished`), or the client left; `reusable`: the
   * stream may carry the next exchange.
   */
  | { sent: true; finished: boolean; reusable: boolean }
  /** Nothing reached the client: the caller may answer an error page, or retry a safe request. */
  | { sent: false; error: Error };

/** Who hears a tunnel stream's events now: the exchange it carries, or the pool keeping it idle. */
export interface StreamUser {
  data(chunk: Buffer): void;
  ended(): void;
  closed(): void;
  failed(err: Error): void;
}

const USER = Symbol('upstream stream user');
type Watched = Duplex & { [USER]?: StreamUser | null };

/**
 * Listens to `stream` once for its whole life and passes its events to whoever uses it now
 * (`setUser`): adding and removing a dozen listeners per request, in the exchange and again
 * in the pool, was a measurable share of the tunnel node's time.
 */
export function setUser(stream: Duplex, user: StreamUser | null) {
  const s = stream as Watched;
  if (s[USER] === undefined) {
    s.on('data', onStreamData);
    s.on('end', onStreamEnd);
    s.on('close', onStreamClose);
    s.on('error', onStreamError);
  }
  s[USER] = user;
}

function onStreamData(this: Watched, chunk: Buffer) {
  this[USER]?.data(chunk);
}
function onStreamEnd(this: Watched) {
  this[USER]?.ended();
}
function onStreamClose(this: Watched) {
  this[USER]?.closed();
}
function onStreamError(this: Watched, err: Error) {
  this[USER]?.failed(err);
}

/**
 * Sends `request` on `stream` and relays the response to `res`; `done` is called once with
 * the outcome. A class rather than closures: this runs once per proxied request, and every
 * closure is an allocation.
 */
export function exchange(stream: Duplex, request: UpstreamRequest, res: ServerResponse, done: (o: ExchangeOutcome) => void): void {
  new Exchange(stream, request, res, done).start();
}

class Exchange implements ResponseEvents, StreamUser {
  #settled = false;
  #headSent = false;
  /** The client's response has been ended (with its last body bytes). */
  #ended = false;
  #requestDone: boolean;
  #reusable = false;
  readonly #parser: ResponseParser;
  readonly #body: IncomingMessage | undefined;
  /** When the response head is due (epoch ms), read by the sweep while the exchange waits for it. */
  deadline = 0;
  /** This exchange's neighbours in the list of those waiting for a head (HeadDeadlines). */
  prevWaiting: Exchange | null = null;
  nextWaiting: Exchange | null = null;
  waiting = false;
  // Listeners on the client's side, bound once per exchange so they can be removed again.
  readonly #onClientClose = this.#clientClosed.bind(this);
  #onClientDrain: (() => void) | undefined;
  #onStreamDrain: (() => void) | undefined;
  #onBodyData: ((chunk: Buffer) => void) | undefined;
  #onBodyEnd: (() => void) | undefined;
  #onBodyClose: (() => void) | undefined;

  constructor(
    private readonly stream: Duplex,
    private readonly request: UpstreamRequest,
    private readonly res: ServerResponse,
    private readonly done: (o: ExchangeOutcome) => void,
  ) {
    this.#body = request.body?.from;
    this.#requestDone = this.#body === undefined;
    this.#parser = new ResponseParser(request.method, this);
  }

  start() {
    const { stream, res } = this;
    awaitingHead.watch(this, this.request.timeoutMs);
    setUser(stream, this);
    res.on('close', this.#onClientClose);
    stream.write(this.request.head, 'latin1');
    stream.resume();
    const body = this.#body;
    if (body) {
      body.on('data', (this.#onBodyData = this.#bodyData.bind(this)));
      body.on('end', (this.#onBodyEnd = this.#bodyEnded.bind(this)));
      body.on('close', (this.#onBodyClose = this.#bodyClosed.bind(this)));
    }
  }

  // ResponseEvents: what the parser read.
  head(h: ResponseHead) {
    awaitingHead.forget(this);
    // A flat list keeps repeated names (Set-Cookie) as long as nothing called setHeader on this
    // response first, which nothing on this path does.
    const { fields } = h;
    const headers: string[] = [];
    for (let i = 0; i < fields.length; i += 2) if (!isHopByHop(fields[i]!)) headers.push(fields[i]!, fields[i + 1]!);
    try {
      this.res.writeHead(h.status, h.reason, headers);
    } catch (err) {
      // A header Node will not send (a character the parser let through): nothing was written yet.
      throw new ClusterError('CLUSTER_ERR_INGRESS_BAD_UPSTREAM', `the target's response is malformed: ${(err as Error).message}`, { reason: 'header not sendable' });
    }
    this.#headSent = true;
  }

  body(chunk: Buffer, last: boolean) {
    // The whole rest of the body: the response ends with it (one call into Node's response, not two).
    if (last) {
      this.#ended = true;
      this.res.end(chunk);
      return;
    }
    // One read can hold several chunks: wait for one drain, however many writes said stop.
    if (!this.res.write(chunk) && !this.stream.isPaused()) {
      this.stream.pause();
      this.res.once('drain', (this.#onClientDrain ??= this.#clientDrained.bind(this)));
    }
  }

  end(reusable: boolean) {
    this.#reusable = reusable;
    if (!this.#ended) this.res.end();
    this.#ended = true;
    // The target answered before taking the whole body (a 413, say): the rest is not sent, and the stream is done.
    if (!this.#requestDone) {
      this.#reusable = false;
      this.#requestDone = true;
    }
    this.#settle({ sent: true, finished: true, reusable: this.#reusable });
  }

  // StreamUser: what the tunnel stream did.
  data(chunk: Buffer) {
    try {
      this.#parser.feed(chunk);
    } catch (err) {
      this.failed(err as Error);
    }
  }

  ended() {
    try {
      this.#parser.eof();
    } catch (err) {
      this.failed(err as Error);
    }
  }

  closed() {
    if (!this.#parser.done) this.ended();
    this.failed(new Error('the tunnel stream closed'));
  }

  /** The stream broke or the target misspoke: before the head nothing was sent; after it the client's response is cut. */
  failed(error: Error) {
    if (this.#settled) return;
    if (!this.#headSent) return this.#settle({ sent: false, error });
    this.res.destroy();
    this.#settle({ sent: true, finished: false, reusable: false });
  }

  timedOut() {
    this.failed(new ClusterError('CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT', 'the target did not answer in time', { siteId: '', targetId: '' }));
  }

  #clientDrained() {
    this.stream.resume();
  }

  #streamDrained() {
    this.#body?.resume();
  }

  /** The client went away: the target's answer has nowhere to go, and the stream is not reused. */
  #clientClosed() {
    if (!this.res.writableFinished) this.#settle({ sent: true, finished: false, reusable: false });
  }

  #bodyData(chunk: Buffer) {
    const { stream } = this;
    const chunked = this.request.body!.chunked;
    if (chunked) stream.write(`${chunk.length.toString(16)}\r\n`);
    let ok = stream.write(chunk);
    if (chunked) ok = stream.write('\r\n');
    if (!ok && !this.#body!.isPaused()) {
      this.#body!.pause();
      stream.once('drain', (this.#onStreamDrain ??= this.#streamDrained.bind(this)));
    }
  }

  #bodyEnded() {
    if (this.request.body!.chunked) this.stream.write('0\r\n\r\n');
    this.#requestDone = true; // the response, when it ends, leaves the stream reusable
  }

  /** The client stopped sending mid-body: the target would wait for the rest forever. */
  #bodyClosed() {
    if (!this.#body!.complete) this.failed(new Error('the client did not send its whole body'));
  }

  #settle(outcome: ExchangeOutcome) {
    if (this.#settled) return;
    this.#settled = true;
    const { stream, res } = this;
    const body = this.#body;
    awaitingHead.forget(this);
    if ((stream as Watched)[USER] === this) setUser(stream, null);
    if (this.#onStreamDrain) stream.off('drain', this.#onStreamDrain);
    res.off('close', this.#onClientClose);
    if (this.#onClientDrain) res.off('drain', this.#onClientDrain);
    if (body) {
      body.off('data', this.#onBodyData!);
      body.off('end', this.#onBodyEnd!);
      body.off('close', this.#onBodyClose!);
    }
    if (!outcome.sent || !outcome.reusable) stream.destroy();
    this.done(outcome);
  }
}

/**
 * Exchanges waiting for their response head, checked by one sweep instead of a timer each
 * (a timer per request was an allocation, a list insertion and, with async hooks enabled
 * by the database client's AsyncLocalStorage, a hook call). A deadline is kept to within
 * a tenth of the timeout, at most a second late.
 *
 * The exchanges are linked through themselves, not held in a Set. A long-lived Set's table is
 * in the old generation, and each time it grows or shrinks the table it leaves behind (garbage
 * until the next full collection) still points at the exchanges in flight then; a scavenge
 * takes every pointer from the old generation as live, so those exchanges, and everything
 * they reach (request, response, headers), were moved to the old generation: 1.9 MB per
 * scavenge at 12-14 k requests/s and a full collection a second (through the list: 0.4 MB;
 * see the README's "Measured tunnel performance").
 */
class HeadDeadlines {
  #first: Exchange | null = null;
  #sweep: NodeJS.Timeout | undefined;
  #everyMs = Infinity;

  watch(x: Exchange, timeoutMs: number) {
    x.deadline = Date.now() + timeoutMs;
    if (!x.waiting) {
      x.waiting = true;
      x.prevWaiting = null;
      x.nextWaiting = this.#first;
      if (this.#first) this.#first.prevWaiting = x;
      this.#first = x;
    }
    const every = Math.max(10, Math.min(1000, Math.floor(timeoutMs / 10)));
    if (this.#sweep && every >= this.#everyMs) return;
    clearInterval(this.#sweep);
    this.#everyMs = every;
    this.#sweep = setInterval(() => this.#check(), every).unref();
  }

  forget(x: Exchange) {
    if (!x.waiting) return;
    x.waiting = false;
    const { prevWaiting: prev, nextWaiting: next } = x;
    if (prev) prev.nextWaiting = next;
    else this.#first = next;
    if (next) next.prevWaiting = prev;
    x.prevWaiting = x.nextWaiting = null;
  }

  count(): number {
    let n = 0;
    for (let x: Exchange | null = this.#first; x; x = x.nextWaiting) n++;
    return n;
  }

  #check() {
    if (!this.#first) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
      this.#everyMs = Infinity;
      return;
    }
    const now = Date.now();
    const due: Exchange[] = [];
    for (let x: Exchange | null = this.#first; x; x = x.nextWaiting) if (x.deadline <= now) due.push(x);
    // Unlinked first, then told: a timed-out exchange's outcome may start another (a retry).
    for (const x of due) this.forget(x);
    for (const x of due) x.timedOut();
  }
}

const awaitingHead = new HeadDeadlines();

/** How many exchanges wait for their response head now (tests: none may be left behind). */
export const waitingForHead = (): number => awaitingHead.count();
