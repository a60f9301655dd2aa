// Local services run with passwords too: on a shared machine, a PostgreSQL that trusts every
// local user, or a Valkey without a password, would let any user write a session and become
// server admin. Each service keeps a generated password in its own directory (mode 0600),
// so a persistent data directory (`cluster up`) keeps working across restarts.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function servicePassword(dir: string): string {
  const file = join(dir, 'password');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const password = randomBytes(24).toString('base64url');
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return password;
}
