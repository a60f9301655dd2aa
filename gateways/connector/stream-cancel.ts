// Giving up a tunnel stream without RST_STREAM. nghttp2 ends a server session that receives
// more than 1,000 stream resets at once or 33 a second after (its "rapid reset" defence,
// CVE-2023-44487), and the connector is that server; on Node 20 the limit cannot be raised.
// The node gives open streams up whenever a client hangs up mid-request or an exchange fails,
// and each reset took a token: clients hanging up at more than 33 a second took the site's
// tunnel down. So while its session is up the node does not reset an open stream: it ends its
// side with CANCEL_TRAILER and the connector resets the stream from its end (resets it sends
// are not counted) and closes the target connection.
import type http2 from 'node:http2';
import { CANCEL_TRAILER } from '../../protocol/tunnel-framing.ts';

/** How long a cancelled stream may stay open (a connector from before CANCEL_TRAILER, a target that ignores the half-close) before it is reset after all. */
export const CANCEL_GRACE_MS = 5000;

const ignore = () => {};

/**
 * Makes `destroy()` of an open tunnel stream a cancel: the caller sees it done (nothing more is
 * read from it, `writable` false) and it closes when the connector's reset comes back, about a
 * round trip later. The stream must have been requested with `waitForTrailers: true`.
 */
export function cancellable(stream: http2.ClientHttp2Stream): void {
  let cancelled = false;
  stream.on('wantTrailers', () => stream.sendTrailers(cancelled ? { [CANCEL_TRAILER]: '1' } : {}));
  stream.on('error', ignore); // the connector's reset of a cancelled stream; callers that care listen too
  const reset = stream.destroy.bind(stream);
  stream.destroy = function cancel(err?: Error) {
    // Closed already (no reset goes out), its session gone, or its side ended (no trailer can follow): destroyed as before.
    if (stream.closed || stream.destroyed || stream.session?.destroyed || (!cancelled && stream.writableEnded)) return reset(err);
    if (cancelled) return stream;
    cancelled = true;
    stream.removeAllListeners('data');
    stream.resume();
    stream.end();
    const late = setTimeout(() => reset(err), CANCEL_GRACE_MS).unref();
    stream.once('close', () => clearTimeout(late));
    return stream;
  };
}
