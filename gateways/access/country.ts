// Country of a client address from an offline GeoLite2 country database (the maintained
// `geoip-country` package, refreshed with each release: update the package to update the
// data). About 8 MB, loaded on first use, so nodes without country rules never pay for it.
import { createRequire } from 'node:module';
import type { CountryOf } from './rules.ts';

export function countryLookup(): CountryOf & { load(): void } {
  let lookup: ((ip: string) => { country: string } | null) | undefined;
  const load = () => void (lookup ??= (createRequire(import.meta.url)('geoip-country') as { lookup: typeof lookup }).lookup);
  return Object.assign((ip: string) => {
    load();
    return lookup!(ip)?.country || undefined;
  }, { load });
}
