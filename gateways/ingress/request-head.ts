// The request head the ingress sends a target: built as one string, line by line, each line
// checked as it is added. Written to the tunnel stream as latin1, one byte per character:
// Node reads a request's header bytes as latin1, so a client's bytes reach the target as they
// came (encoded as UTF-8, a byte over 0x7f became two), and a character past 0xff, which
// latin1 would cut to its low byte (U+010A to LF), is refused instead.
import { ClusterError } from '../../core/errors.ts';

/** Hop-by-hop headers: never passed on, either way. A switch on the length: no hash of the name per header. */
export function isHopByHop(name: string): boolean {
  switch (name.length) {
    case 2:
      return name === 'te';
    case 7:
      return name === 'trailer' || name === 'upgrade';
    case 10:
      return name === 'connection' || name === 'keep-alive';
    case 16:
      return name === 'proxy-connection';
    case 17:
      return name === 'transfer-encoding';
    case 18:
      return name === 'proxy-authenticate';
    case 19:
      return name === 'proxy-authorization';
    default:
      return false;
  }
}

/** Not a byte of a request line or header line: CR, LF, NUL and the other controls but tab, and anything past latin1. */
const UNSAFE = /[^\t\x20-\x7e\x80-\xff]/;

/** `METHOD path HTTP/1.1` and its CRLF; a coded error when it would not stay one line of three parts. */
export function requestLine(method: string, path: string): string {
  if (UNSAFE.test(method) || UNSAFE.test(path) || path.includes(' ') || method.includes(' ')) throw new ClusterError('CLUSTER_ERR_INGRESS_BAD_REQUEST', 'request line not safe to forward', { reason: 'unsafe request line' });
  return `${method} ${path} HTTP/1.1\r\n`;
}

/** A header name: a token (RFC 9110 section 5.6.2). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * `name: value` and its CRLF; a coded error when it would not stay one header line. Name and
 * value are tested apart, as they came: a string joined first would be tested as a rope, which
 * V8 flattens first (four times the cost of both tests).
 */
export function headerLine(name: string, value: string): string {
  if (UNSAFE.test(value) || !TOKEN.test(name)) throw new ClusterError('CLUSTER_ERR_INGRESS_BAD_REQUEST', 'header not safe to forward', { reason: 'unsafe header' });
  return `${name}: ${value}\r\n`;
}
