// UDP over a stream: each datagram is sent as a 2-byte big-endian length and the payload,
// so datagram boundaries survive the byte stream (an HTTP/2 stream through the tunnel).
export const MAX_DATAGRAM = 65_507;

export function frameDatagram(payload: Buffer): Buffer {
  if (payload.length > MAX_DATAGRAM) throw new RangeError('datagram too large');
  const head = Buffer.alloc(2);
  head.writeUInt16BE(payload.length);
  return Buffer.concat([head, payload]);
}

/** Collects stream chunks and yields whole datagrams, however the chunks were split. */
export class Deframer {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.#buf.length >= 2) {
      const len = this.#buf.readUInt16BE(0);
      if (this.#buf.length < 2 + len) break;
      out.push(this.#buf.subarray(2, 2 + len));
      this.#buf = this.#buf.subarray(2 + len);
    }
    return out;
  }
}
