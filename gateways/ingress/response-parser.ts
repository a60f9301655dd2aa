// An HTTP/1.1 response reader for the ingress's own upstream client (upstream-exchange.ts):
// fed the bytes a target sent on a tunnel stream, it says where the head ends, what the
// headers are, which bytes are body and where the response ends (RFC 9112 section 6.3), and
// whether the connection can carry another exchange. Node's `http` client did this before,
// with an agent, a request object and a dozen listeners per request; that was a quarter of
// the tunnel node's time. Anything ambiguous is an error, never a guess: a response split
// differently here and at the target would hand one client's bytes to the next.
import { ClusterError } from '../../core/errors.ts';

/** Longest response head accepted (status line and headers). */
export const MAX_RESPONSE_HEAD = 64 * 1024;
/** Longest chunk-size line (with extensions) or trailer section accepted. */
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;

/** A header name: a token (RFC 9110 section 5.6.2). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: ([^\r\n]*))?$/;
const EMPTY = Buffer.alloc(0);

/** A CR not followed by LF, or an LF not after a CR: the head's lines are split at CRLF only. */
const LONE_CR_OR_LF = /\r(?!\n)|(?<!\r)\n/;
/** How much of a read is read as text for the end of the head; a longer head is searched for in the whole buffer. */
const HEAD_PEEK = 2048;

/** `text` from `from` to `to` without the spaces and tabs around it (a header value's optional whitespace). */
function trimOws(text: string, from: number, to: number): string {
  let a = from;
  let b = to;
  while (a < b && (text.charCodeAt(a) === 32 || text.charCodeAt(a) === 9)) a++;
  while (b > a && (text.charCodeAt(b - 1) === 32 || text.charCodeAt(b - 1) === 9)) b--;
  return text.slice(a, b);
}

export interface ResponseHead {
  status: number;
  reason: string;
  /** Name/value pairs in the order sent, names lower-cased; a repeated name is repeated. */
  fields: readonly string[];
  /** The same keyed by name; a name sent more than once keeps every value, in order. */
  readonly headers: Record<string, string | string[]>;
}

class Head implements ResponseHead {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly fields: string[],
  ) {}

  get headers(): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (let i = 0; i < this.fields.length; i += 2) {
      const [key, value] = [this.fields[i]!, this.fields[i + 1]!];
      const had = out[key];
      out[key] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
    }
    return out;
  }
}

export interface ResponseEvents {
  head(head: ResponseHead): void;
  /** Body bytes; `last`: the body ends with them (a counted body; `end` follows at once). */
  body(chunk: Buffer, last: boolean): void;
  /** The response is whole; `reusable`: the connection may carry the next exchange. */
  end(reusable: boolean): void;
}

type State = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'until-close' | 'done';

const DIGITS = /^\d{1,15}$/;

/** One Content-Length from its values (repeated or comma-listed ones must all be equal); a plain one without allocating. */
function contentLength(cl: string | string[]): number {
  if (typeof cl === 'string' && DIGITS.test(cl)) return Number(cl);
  const values = (Array.isArray(cl) ? cl : [cl]).flatMap((v) => v.split(',')).map((v) => v.trim());
  if (!values.every((v) => DIGITS.test(v)) || new Set(values).size !== 1) throw bad('bad content-length');
  return Number(values[0]);
}

const bad = (reason: string) => new ClusterError('CLUSTER_ERR_INGRESS_BAD_UPSTREAM', `the target's response is malformed: ${reason}`, { reason });

export class ResponseParser {
  #state: State = 'head';
  #buf: Buffer = EMPTY;
  #left = 0;
  #reusable = true;
  readonly #head: boolean;

  /** `method`: the request's (a HEAD response has no body). */
  constructor(
    method: string,
    private readonly on: ResponseEvents,
  ) {
    this.#head = method === 'HEAD';
  }

  /** Whether the whole response has been read. */
  get done(): boolean {
    return this.#state === 'done';
  }

  /** Bytes from the target; throws a coded error on a malformed response. */
  feed(chunk: Buffer) {
    if (this.#state === 'done') throw bad('bytes after the response');
    if (this.#state === 'until-close') return this.on.body(chunk, false);
    if (this.#state === 'length' && this.#buf.length === 0 && chunk.length < this.#left) {
      // The common case: body bytes straight through, no copy.
      this.#left -= chunk.length;
      return this.on.body(chunk, false);
    }
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    this.#run();
  }

  /** The target closed its side: ends a response that runs until close, else it was cut short. */
  eof() {
    if (this.#state === 'until-close') return this.#finish(false);
    if (this.#state !== 'done') throw bad('connection closed before the response ended');
  }

  #run() {
    while (this.#state !== 'done') {
      const buf = this.#buf;
      if (this.#state === 'head') {
        // The first bytes as latin1 text, searched there: most heads end in them, and the text is
        // the head's then (one conversion per response, not a search and a conversion).
        const peek = buf.toString('latin1', 0, Math.min(buf.length, HEAD_PEEK));
        let end = peek.indexOf('\r\n\r\n');
        let text: string;
        if (end >= 0) text = peek.slice(0, end);
        else {
          end = buf.length > HEAD_PEEK ? buf.indexOf('\r\n\r\n') : -1;
          if (end < 0) {
            if (buf.length > MAX_RESPONSE_HEAD) throw bad('head too large');
            return;
          }
          if (end > MAX_RESPONSE_HEAD) throw bad('head too large');
          text = buf.toString('latin1', 0, end);
        }
        this.#buf = buf.subarray(end + 4);
        this.#onHead(text);
      } else if (this.#state === 'length' || this.#state === 'chunk-data') {
        // A counted run of body bytes: the whole body, or one chunk.
        if (buf.length === 0) return;
        const take = Math.min(this.#left, buf.length);
        this.#left -= take;
        this.#buf = buf.subarray(take);
        this.on.body(buf.subarray(0, take), this.#left === 0 && this.#state === 'length');
        if (this.#left > 0) continue;
        if (this.#state === 'length') this.#finish(this.#reusable);
        else this.#state = 'chunk-crlf';
      } else if (this.#state === 'chunk-size') {
        const end = buf.indexOf('\r\n');
        if (end < 0) {
          if (buf.length > MAX_CHUNK_LINE) throw bad('chunk size line too long');
          return;
        }
        const line = buf.toString('latin1', 0, end);
        const size = /^([0-9A-Fa-f]{1,8})[ \t]*(?:;[^\r\n]*)?$/.exec(line);
        if (!size) throw bad('bad chunk size');
        this.#buf = buf.subarray(end + 2);
        this.#left = parseInt(size[1]!, 16);
        this.#state = this.#left === 0 ? 'trailers' : 'chunk-data';
      } else if (this.#state === 'chunk-crlf') {
        if (buf.length < 2) return;
        if (buf[0] !== 13 || buf[1] !== 10) throw bad('chunk not followed by CRLF');
        this.#buf = buf.subarray(2);
        this.#state = 'chunk-size';
      } else if (this.#state === 'trailers') {
        // Trailer fields are read and dropped (they would need the client to have asked for them).
        if (buf.length >= 2 && buf[0] === 13 && buf[1] === 10) {
          this.#buf = buf.subarray(2);
          this.#finish(this.#reusable);
          continue;
        }
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > MAX_TRAILERS) throw bad('trailers too large');
          return;
        }
        this.#buf = buf.subarray(end + 4);
        this.#finish(this.#reusable);
      } else if (this.#state === 'until-close') {
        this.#buf = EMPTY;
        if (buf.length) this.on.body(buf, false);
        return;
      }
    }
  }

  #onHead(text: string) {
    let eol = text.indexOf('\r\n');
    const status = STATUS_LINE.exec(eol < 0 ? text : text.slice(0, eol));
    // A NUL anywhere, or a CR or LF that is not part of a CRLF, ends it here (one pass over the head, not two per line).
    if (text.includes('\0') || LONE_CR_OR_LF.test(text)) throw bad(status ? 'bad header value' : 'bad status line');
    if (!status) throw bad('bad status line');
    const code = Number(status[2]);
    // Name/value pairs as they came (names lower-cased), for the client's response as they are:
    // no object keyed by name to build and walk again. The framing headers are noted on the way.
    const fields: string[] = [];
    let connection = '';
    let te: string | undefined;
    let cl: string[] | undefined;
    let clAt = -1;
    while (eol >= 0) {
      const from = eol + 2;
      eol = text.indexOf('\r\n', from);
      const to = eol < 0 ? text.length : eol;
      const colon = text.indexOf(':', from);
      // No colon, an empty or non-token name (obs-fold: a line starting with whitespace).
      if (colon < 0 || colon > to) throw bad('bad header line');
      const name = text.slice(from, colon);
      if (!TOKEN.test(name)) throw bad('bad header name');
      const value = trimOws(text, colon + 1, to);
      const key = name.toLowerCase();
      if (key === 'content-length') {
        (cl ??= []).push(value);
        if (clAt >= 0) continue; // repeated (equal, or refused below) values go on as one
        clAt = fields.length;
      } else if (key === 'connection') connection = connection ? `${connection},${value}` : value;
      else if (key === 'transfer-encoding') te = te === undefined ? value : `${te},${value}`;
      fields.push(key, value);
    }
    // Interim responses (100 Continue, 103 Early Hints) are read and dropped: the final one follows.
    if (code >= 100 && code < 200) {
      if (code === 101) throw bad('switching protocols on a plain request');
      return;
    }
    const http10 = status[1] === '0';
    connection = connection.toLowerCase();
    this.#reusable = !connection.includes('close') && (!http10 || connection.includes('keep-alive'));
    // The framing is settled before anything goes to the client.
    let next: State;
    if (this.#head || code === 204 || code === 304) next = 'done';
    else if (te !== undefined) {
      // Both framings: the transfer coding wins, and the connection is not trusted again. The
      // length is not passed on: the client gets the decoded body framed by this edge.
      if (cl !== undefined) {
        this.#reusable = false;
        fields.splice(clAt, 2);
      }
      const codings = te.split(',').map((c) => c.trim().toLowerCase());
      next = codings.at(-1) === 'chunked' && !http10 ? 'chunk-size' : 'until-close';
    } else if (cl !== undefined) {
      const length = contentLength(cl.length === 1 ? cl[0]! : cl);
      fields[clAt + 1] = String(length);
      this.#left = length;
      next = this.#left === 0 ? 'done' : 'length';
    } else next = 'until-close';
    if (next === 'until-close') this.#reusable = false;
    this.on.head(new Head(code, status[3] ?? '', fields));
    if (next === 'done') this.#finish(this.#reusable);
    else this.#state = next;
  }

  #finish(reusable: boolean) {
    this.#state = 'done';
    // Bytes beyond the response: the target is out of step with us, so its connection is not reused.
    const extra = this.#buf.length > 0;
    this.#buf = EMPTY;
    this.on.end(reusable && !extra);
  }
}
