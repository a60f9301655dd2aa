// The signed-in account: two-factor sign-in on (secret for the app, confirm with a code,
// recovery codes shown once) or off (with a code).
import { useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Me } from '../app.tsx';

export function AccountPage({ me, reload }: { me: Me; reload: () => void }) {
  const [secret, setSecret] = useState<{ secret: string; uri: string } | undefined>();
  const [codes, setCodes] = useState<string[]>([]);
  const [error, setError] = useState('');
  const run = async (fn: () => Promise<void>) => {
    try {
      await fn();
      setError('');
    } catch (err) {
      setError(describe(err));
    }
  };
  const code = (e: Event) => ((e.currentTarget as HTMLFormElement).elements.namedItem('code') as HTMLInputElement).value.trim();
  return (
    <section>
      <h2>Account</h2>
      {error && <p class="error" role="alert">{error}</p>}
      <p>{me.email}{me.isServerAdmin && ' (server administrator)'}</p>
      <h3>Two-factor sign-in</h3>
      <p id="two-factor-state">{me.twoFactor.enrolled ? 'On.' : me.twoFactor.required ? 'Required for this account, and not set up yet.' : 'Off.'}</p>
      {codes.length > 0 && (
        <article id="recovery-codes">
          <p>Recovery codes, shown only now; each works once:</p>
          <ul>{codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul>
        </article>
      )}
      {!me.twoFactor.enrolled && !secret && <button id="enrol" onClick={() => run(async () => {
        const r = await api('POST /api/v1/auth/totp', { body: {} });
        const d = r.data as { secret: string; otpauthUri: string };
        setSecret({ secret: d.secret, uri: d.otpauthUri });
      })}>Set up an authenticator app</button>}
      {secret && (
        <form id="confirm-form" onSubmit={(e) => (e.preventDefault(), run(async () => {
          const r = await api('POST /api/v1/auth/totp/confirm', { body: { code: code(e) } });
          setCodes((r.data as { recoveryCodes: string[] }).recoveryCodes);
          setSecret(undefined);
          reload();
        }))}>
          <p>Add this secret to your authenticator app: <code id="totp-secret">{secret.secret}</code></p>
          <p class="muted">{secret.uri}</p>
          <label>Code from the app<input name="code" required pattern="[0-9]{6}" autocomplete="one-time-code" /></label>
          <button type="submit">Turn on</button>
        </form>
      )}
      {me.twoFactor.enrolled && (
        <form id="disable-form" onSubmit={(e) => (e.preventDefault(), run(async () => {
          const c = code(e);
          await api('DELETE /api/v1/auth/totp', { body: /^\d{6}$/.test(c) ? { code: c } : { recoveryCode: c } });
          reload();
        }))}>
          <label>A current code (or a recovery code) to turn it off<input name="code" required autocomplete="one-time-code" /></label>
          <button type="submit" class="secondary">Turn off</button>
        </form>
      )}
    </section>
  );
}
