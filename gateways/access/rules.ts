// Access rules (pure): client IP, CIDR, path glob and country, first match by priority.
// Paths are compared after normalization (dot segments resolved, repeated slashes collapsed,
// percent-encoding decoded), so `/%61dmin`, `//admin` and `/x/../admin` all meet a rule
// written for `/admin`; a path that cannot be decoded matches no allow rule and every deny.
import { BlockList, isIP } from 'node:net';
import type { AccessRule } from '../../protocol/access.ts';

export type CountryOf = (ip: string) => string | undefined;

/** The path as a target would most likely read it, or null when it cannot be decoded. */
export function normalizePath(rawUrl: string): string | null {
  const q = rawUrl.indexOf('?');
  const raw = q < 0 ? rawUrl : rawUrl.slice(0, q);
  try {
    const decoded = decodeURIComponent(raw.replace(/\/{2,}/g, '/'));
    if (decoded.includes('\0')) return null;
    // The URL parser resolves `.` and `..` (and their encodings, decoded above).
    const resolved = new URL(decoded.replace(/[?#%]/g, (c) => encodeURIComponent(c)), 'http://h').pathname;
    return decodeURIComponent(resolved).replace(/\/{2,}/g, '/');
  } catch {
    return null;
  }
}

const globCache = new Map<string, RegExp>();

/** `*` matches any run of characters (slashes included), `?` one character; the rest is literal. */
export function globToRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (!re) {
    re = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');
    if (globCache.size > 10_000) globCache.clear();
    globCache.set(glob, re);
  }
  return re;
}

/** The address a rule compares: an IPv4-mapped IPv6 address is the IPv4 client. */
export function plainIp(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Parses `a.b.c.d/n` or `x::/n`; undefined when it is not a CIDR block. */
export function parseCidr(value: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(value);
  if (!m) return undefined;
  const v = isIP(m[1]!);
  const prefix = Number(m[2]);
  if (v === 0 || prefix > (v === 4 ? 32 : 128)) return undefined;
  return { address: m[1]!, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

const cidrCache = new Map<string, BlockList>();

function inCidr(ip: string, cidr: string): boolean {
  let list = cidrCache.get(cidr);
  if (!list) {
    const c = parseCidr(cidr);
    list = new BlockList();
    if (c) list.addSubnet(c.address, c.prefix, c.family);
    if (cidrCache.size > 10_000) cidrCache.clear();
    cidrCache.set(cidr, list);
  }
  const v = isIP(ip);
  return v !== 0 && list.check(ip, v === 4 ? 'ipv4' : 'ipv6');
}

/** Does one rule match this request? */
export function ruleMatches(rule: AccessRule, req: { client: string; path: string | null }, countryOf: CountryOf): boolean {
  const ip = plainIp(req.client);
  switch (rule.match) {
    case 'ip':
      return ip === plainIp(rule.value);
    case 'cidr':
      return inCidr(ip, rule.value);
    case 'path':
      // An undecodable path: never let it through on an allow rule, always stop it on a deny.
      return req.path === null ? rule.action === 'deny' : globToRegExp(rule.value).test(req.path);
    case 'country':
      return countryOf(ip) === rule.value.toUpperCase();
  }
}

/** The first rule (by priority) that matches, if any. */
export function firstMatch(rules: readonly AccessRule[], req: { client: string; path: string | null }, countryOf: CountryOf): AccessRule | undefined {
  for (const r of rules) if (ruleMatches(r, req, countryOf)) return r;
  return undefined;
}

/** Checks a rule's value for its kind; returns what is wrong, or undefined. */
export function ruleValueProblem(match: AccessRule['match'], value: string): string | undefined {
  switch (match) {
    case 'ip':
      return isIP(value) ? undefined : 'not an IP address';
    case 'cidr':
      return parseCidr(value) ? undefined : 'not a CIDR block (a.b.c.d/n or x::/n)';
    case 'path':
      return /^\/[\x21-\x7e]*$/.test(value) ? undefined : 'a path glob starts with / and holds printable characters only';
    case 'country':
      return /^[A-Za-z]{2}$/.test(value) ? undefined : 'an ISO 3166-1 alpha-2 country code (two letters)';
  }
}
