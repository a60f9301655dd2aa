// Field parsers for cluster.config.ts. Each parser accepts the value as written in a config
// file or as an environment string, and either returns the compiled value or throws a
// FieldProblem saying what is wrong and what form was expected.
import { isIP } from 'node:net';
import { Secret } from './secret.ts';

export class FieldProblem extends Error {
  constructor(
    readonly problem: string,
    readonly expected: string,
  ) {
    super(problem);
  }
}

export interface Field<T> {
  readonly parse: (raw: unknown) => T;
  /** Value used when neither the file nor the environment sets the field. */
  readonly default?: unknown;
  /** A field with no default that may stay unset (compiles to undefined). */
  readonly optional?: boolean;
  /** Never echo the raw value in errors; redact in output. */
  readonly secret?: boolean;
  /** How an environment string becomes a raw value. */
  readonly fromEnv?: (text: string) => unknown;
}

export interface Address {
  host: string;
  port: number;
}

/** Describes a raw value for an error message without ever echoing a secret. */
export function describe(raw: unknown, secret = false): string {
  if (secret) return typeof raw === 'string' ? `a ${raw.length}-character value` : `a ${typeof raw}`;
  const text = JSON.stringify(raw) ?? String(raw);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function duration(def: string, opts: { min?: number; max?: number } = {}): Field<number> {
  const expected = 'a duration such as "250ms", "3s", "5m" or a whole number of milliseconds';
  return {
    default: def,
    parse(raw) {
      let ms: number;
      if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0) ms = raw;
      else if (typeof raw === 'string' && /^\d+$/.test(raw.trim())) ms = Number(raw.trim());
      else if (typeof raw === 'string' && DURATION.test(raw.trim())) {
        const [, n, unit] = DURATION.exec(raw.trim())!;
        ms = Math.round(Number(n) * UNIT_MS[unit!]!);
      } else throw new FieldProblem(`${describe(raw)} is not a duration`, expected);
      if (opts.min !== undefined && ms < opts.min) throw new FieldProblem(`${describe(raw)} is shorter than ${opts.min}ms`, expected);
      if (opts.max !== undefined && ms > opts.max) throw new FieldProblem(`${describe(raw)} is longer than ${opts.max}ms`, expected);
      return ms;
    },
  };
}

export function integer(def: number, min: number, max: number): Field<number> {
  const expected = `a whole number from ${min} to ${max}`;
  return {
    default: def,
    parse(raw) {
      const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw new FieldProblem(`${describe(raw)} is not a whole number`, expected);
      if (n < min || n > max) throw new FieldProblem(`${n} is out of range`, expected);
      return n;
    },
  };
}

export function boolean(def: boolean): Field<boolean> {
  return {
    default: def,
    parse(raw) {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new FieldProblem(`${describe(raw)} is not a boolean`, 'true or false');
    },
  };
}

export function oneOf<const V extends string>(values: readonly V[], def: V): Field<V> {
  return {
    default: def,
    parse(raw) {
      if (typeof raw === 'string' && (values as readonly string[]).includes(raw)) return raw as V;
      throw new FieldProblem(`${describe(raw)} is not allowed`, `one of ${values.map((v) => `"${v}"`).join(', ')}`);
    },
  };
}

export function text(opts: { default?: string; pattern?: RegExp; expected: string; optional?: boolean }): Field<string> {
  return {
    default: opts.default,
    optional: opts.optional,
    parse(raw) {
      if (typeof raw !== 'string' || raw.length === 0) throw new FieldProblem(`${describe(raw)} is not a non-empty string`, opts.expected);
      if (opts.pattern && !opts.pattern.test(raw)) throw new FieldProblem(`${describe(raw)} has the wrong form`, opts.expected);
      return raw;
    },
  };
}

export function url(opts: { protocols: string[]; default?: string; secret?: boolean; optional?: boolean }): Field<string> {
  const expected = `a URL starting with ${opts.protocols.map((p) => `${p}//`).join(' or ')}`;
  return {
    default: opts.default,
    optional: opts.optional,
    secret: opts.secret,
    parse(raw) {
      let parsed: URL;
      try {
        parsed = new URL(String(raw));
      } catch {
        throw new FieldProblem(`${describe(raw, opts.secret)} is not a URL`, expected);
      }
      if (typeof raw !== 'string' || !opts.protocols.includes(parsed.protocol)) {
        throw new FieldProblem(`${describe(raw, opts.secret)} has an unsupported scheme`, expected);
      }
      return raw;
    },
  };
}

export function secretUrl(protocols: string[], opts: { optional?: boolean } = {}): Field<Secret> {
  const inner = url({ protocols, secret: true });
  return { secret: true, optional: opts.optional, parse: (raw) => new Secret(inner.parse(raw)) };
}

export function secretText(minLength: number, opts: { optional?: boolean } = {}): Field<Secret> {
  const expected = `a random string of at least ${minLength} characters`;
  return {
    secret: true,
    optional: opts.optional,
    parse(raw) {
      if (typeof raw !== 'string') throw new FieldProblem(`${describe(raw, true)} is not a string`, expected);
      if (raw.length < minLength) throw new FieldProblem(`${describe(raw, true)} is too short`, expected);
      return new Secret(raw);
    },
  };
}

/** A 256-bit key written as 64 hex digits or 44 base64 characters. */
export function key256(): Field<Secret<Buffer>> {
  const expected = '32 random bytes as 64 hex digits or base64 (e.g. `openssl rand -base64 32`)';
  return {
    secret: true,
    parse(raw) {
      if (typeof raw !== 'string') throw new FieldProblem(`${describe(raw, true)} is not a string`, expected);
      const value = raw.trim();
      let bytes: Buffer | undefined;
      if (/^[0-9a-fA-F]{64}$/.test(value)) bytes = Buffer.from(value, 'hex');
      else if (/^[A-Za-z0-9+/]{43}=?$/.test(value)) bytes = Buffer.from(value, 'base64');
      if (!bytes || bytes.length !== 32) throw new FieldProblem(`${describe(raw, true)} is not a 32-byte key`, expected);
      return new Secret(bytes);
    },
  };
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function parseAddress(raw: unknown, expected: string): Address {
  if (typeof raw !== 'string') throw new FieldProblem(`${describe(raw)} is not a string`, expected);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(raw.trim());
  if (!m) throw new FieldProblem(`${describe(raw)} is not host:port`, expected);
  const host = m[1] ?? (m[2] || '0.0.0.0');
  const port = Number(m[3]);
  if (m[1] && isIP(host) !== 6) throw new FieldProblem(`${describe(raw)} has an invalid IPv6 address`, expected);
  if (!m[1] && !isIP(host) && !HOSTNAME.test(host)) throw new FieldProblem(`${describe(raw)} has an invalid host`, expected);
  if (port < 1 || port > 65535) throw new FieldProblem(`${describe(raw)} has a port outside 1-65535`, expected);
  return { host, port };
}

export interface PortRange {
  min: number;
  max: number;
}

/** "20000-29999": an inclusive range of ports. */
export function portRange(def: string): Field<PortRange> {
  const expected = 'a port range "min-max" within 1-65535, e.g. "20000-29999"';
  return {
    default: def,
    parse(raw) {
      const m = typeof raw === 'string' ? /^(\d{1,5})-(\d{1,5})$/.exec(raw.trim()) : null;
      if (!m) throw new FieldProblem(`${describe(raw)} is not a port range`, expected);
      const [min, max] = [Number(m[1]), Number(m[2])];
      if (min < 1 || max > 65535 || min > max) throw new FieldProblem(`${describe(raw)} is not an ascending range within 1-65535`, expected);
      return { min, max };
    },
  };
}

export function address(def: string | undefined, opts: { optional?: boolean } = {}): Field<Address> {
  const expected = 'host:port, e.g. "0.0.0.0:443", "127.0.0.1:8080" or "[::]:53"';
  return { default: def, optional: opts.optional, parse: (raw) => parseAddress(raw, expected) };
}

function list<T>(item: (raw: unknown) => T, def: unknown[]): Field<T[]> {
  return {
    default: def,
    fromEnv: (s) => s.split(',').map((v) => v.trim()).filter(Boolean),
    parse(raw) {
      if (!Array.isArray(raw)) throw new FieldProblem(`${describe(raw)} is not a list`, 'a list (comma-separated in the environment)');
      return raw.map(item);
    },
  };
}

export function addressList(def: string[]): Field<Address[]> {
  const expected = 'a list of host:port addresses, e.g. ["10.0.0.53:53"]';
  return list((raw) => parseAddress(raw, expected), def);
}

export function ipList(def: string[]): Field<string[]> {
  return list((raw) => {
    if (typeof raw === 'string' && isIP(raw)) return raw;
    throw new FieldProblem(`${describe(raw)} is not an IP address`, 'a list of IPv4 or IPv6 addresses');
  }, def);
}

export function domainList(def: string[]): Field<string[]> {
  return list((raw) => {
    const name = typeof raw === 'string' ? raw.toLowerCase().replace(/\.$/, '') : raw;
    if (typeof name === 'string' && HOSTNAME.test(name) && name.includes('.')) return name;
    throw new FieldProblem(`${describe(raw)} is not a domain name`, 'a list of domain names such as "example.com"');
  }, def);
}
