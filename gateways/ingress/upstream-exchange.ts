// One HTTP/1.1 exchange with a target over a tunnel stream: the request head written as one
// string, the client's body streamed after it (re-chunked when it came chunked), and the
// response relayed to the client as response-parser.ts reads it, with backpressure both ways.
// Replaces Node's http client on this path (an agent, a request object and a parser wrapper
// per request cost about a quarter of the tunnel node's time).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ClusterError } from '../../core/errors.ts';
import { ResponseParser } from './response-parser.ts';

export interface UpstreamRequest {
  method: string;
  path: string;
  /** Lower-case names, already stripped of hop-by-hop and edge-only headers. */
  headers: Record<string, string | string[]>;
  /** The client's request, when it has a body to stream (`chunked`: re-frame it so). */
  body?: { from: IncomingMessage; chunked: boolean };
  /** Longest wait for the response head. */
  timeoutMs: number;
}

/** Hop-by-hop headers: never passed on, either way. */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);

/** No CR, LF or NUL may reach the target inside a request line or header: it would split the request. */
const UNSAFE = /[\r\n\0]/;

export function requestHead(r: Pick<UpstreamRequest, 'method' | 'path' | 'headers'>): string {
  if (UNSAFE.test(r.method) || UNSAFE.test(r.path) || r.path.includes(' ')) throw new ClusterError('CLUSTER_ERR_INGRESS_BAD_REQUEST', 'request line not safe to forward', { reason: 'unsafe request line' });
  let head = `${r.method} ${r.path} HTTP/1.1\r\n`;
  for (const name in r.headers) {
    const v = r.headers[name]!;
    for (const value of Array.isArray(v) ? v : [v]) {
      if (UNSAFE.test(name) || UNSAFE.test(value)) throw new ClusterError('CLUSTER_ERR_INGRESS_BAD_REQUEST', 'header not safe to forward', { reason: 'unsafe header' });
      head += `${name}: ${value}\r\n`;
    }
  }
  return `${head}\r\n`;
}

export type ExchangeOutcome =
  /** The response went to the client whole (or the client left); `reusable`: the stream may carry the next exchange. */
  | { sent: true; reusable: boolean }
  /** Nothing reached the client: the caller may answer an error page, or retry a safe request. */
  | { sent: false; error: Error };

export function exchange(stream: Duplex, request: UpstreamRequest, res: ServerResponse): Promise<ExchangeOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    let headSent = false;
    let requestDone = request.body === undefined;
    let responseDone = false;
    let reusable = false;
    const body = request.body?.from;

    const cleanup = () => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      stream.off('error', onError);
      stream.off('drain', onStreamDrain);
      res.off('close', onClientClose);
      res.off('drain', onClientDrain);
      body?.off('data', onBodyData);
      body?.off('end', onBodyEnd);
      body?.off('close', onBodyClose);
    };
    const settle = (outcome: ExchangeOutcome) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (!outcome.sent || !outcome.reusable) stream.destroy();
      resolve(outcome);
    };
    /** The stream broke or the target misspoke: before the head nothing was sent; after it the client's response is cut. */
    const fail = (error: Error) => {
      if (settled) return;
      if (!headSent) return settle({ sent: false, error });
      res.destroy();
      settle({ sent: true, reusable: false });
    };
    /** Done when both the response and the request body went through whole. */
    const maybeDone = () => {
      if (responseDone && requestDone) settle({ sent: true, reusable });
    };

    const parser = new ResponseParser(request.method, {
      head: (h) => {
        clearTimeout(timer);
        const headers: Record<string, string | string[]> = {};
        for (const name in h.headers) if (!HOP_BY_HOP.has(name)) headers[name] = h.headers[name]!;
        headSent = true;
        try {
          res.writeHead(h.status, h.reason, headers);
        } catch (err) {
          // A header Node will not send (a character the parser let through): nothing was written yet.
          headSent = false;
          throw new ClusterError('CLUSTER_ERR_INGRESS_BAD_UPSTREAM', `the target's response is malformed: ${(err as Error).message}`, { reason: 'header not sendable' });
        }
      },
      body: (chunk) => {
        // One read can hold several chunks: wait for one drain, however many writes said stop.
        if (!res.write(chunk) && !stream.isPaused()) {
          stream.pause();
          res.once('drain', onClientDrain);
        }
      },
      end: (ok) => {
        responseDone = true;
        reusable = ok;
        res.end();
        // The target answered before taking the whole body (a 413, say): the rest is not sent, and the stream is done.
        if (!requestDone) {
          reusable = false;
          requestDone = true;
        }
        maybeDone();
      },
    });
    const onData = (chunk: Buffer) => {
      try {
        parser.feed(chunk);
      } catch (err) {
        fail(err as Error);
      }
    };
    const onEnd = () => {
      try {
        parser.eof();
      } catch (err) {
        fail(err as Error);
      }
    };
    const onClose = () => {
      if (!parser.done) onEnd();
      if (!settled) fail(new Error('the tunnel stream closed'));
    };
    const onError = (err: Error) => fail(err);
    const onClientDrain = () => stream.resume();
    const onStreamDrain = () => body?.resume();
    // The client went away: the target's answer has nowhere to go, and the stream is not reused.
    const onClientClose = () => {
      if (!res.writableFinished) settle({ sent: true, reusable: false });
    };
    const onBodyData = (chunk: Buffer) => {
      if (request.body!.chunked) stream.write(`${chunk.length.toString(16)}\r\n`);
      let ok = stream.write(chunk);
      if (request.body!.chunked) ok = stream.write('\r\n');
      if (!ok && !body!.isPaused()) {
        body!.pause();
        stream.once('drain', onStreamDrain);
      }
    };
    const onBodyEnd = () => {
      if (request.body!.chunked) stream.write('0\r\n\r\n');
      requestDone = true;
      maybeDone();
    };
    // The client stopped sending mid-body: the target would wait for the rest forever.
    const onBodyClose = () => {
      if (!body!.complete) fail(new Error('the client did not send its whole body'));
    };
    const timer = setTimeout(() => fail(new ClusterError('CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT', 'the target did not answer in time', { siteId: '', targetId: '' })), request.timeoutMs);

    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onClose);
    stream.on('error', onError);
    res.on('close', onClientClose);
    let head: string;
    try {
      head = requestHead(request);
    } catch (err) {
      return settle({ sent: false, error: err as Error });
    }
    stream.write(head);
    stream.resume();
    if (body) {
      body.on('data', onBodyData);
      body.on('end', onBodyEnd);
      body.on('close', onBodyClose);
    }
  });
}
