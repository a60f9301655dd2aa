// Signing in: first-time setup with the one-time setup token (while no administrator exists),
// e-mail and password, identity providers, and the second factor (a TOTP code or a recovery
// code; or enrolling, when the account must have one and has none yet).
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';

type Step = { kind: 'password' } | { kind: 'setup' } | { kind: 'totp'; ticket: string } | { kind: 'enrol'; ticket: string; secret?: string; uri?: string } | { kind: 'recovery'; codes: string[] };

/** A provider's callback lands on `/#second-factor=totp&ticket=...` when a code is due. */
function stepFromHash(): Step | undefined {
  const m = /second-factor=(totp|enrol)&ticket=([^&]+)/.exec(location.hash);
  return m ? { kind: m[1] as 'totp' | 'enrol', ticket: decodeURIComponent(m[2]!) } : undefined;
}

export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [step, setStep] = useState<Step>(stepFromHash() ?? { kind: 'password' });
  const [providers, setProviders] = useState<Array<{ id: string; name: string }>>([]);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api('GET /api/v1/auth/setup', {}).then((r) => r.data.needed && setStep({ kind: 'setup' }), () => {});
    api('GET /api/v1/auth/providers', {}).then((r) => setProviders(r.data.items), () => {});
  }, []);

  const run = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError('');
    try {
      await fn();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };
  const field = (form: HTMLFormElement, name: string) => (form.elements.namedItem(name) as HTMLInputElement).value;
  const afterPassword = async (r: { status: number; data: unknown }) => {
    const d = r.data as { secondFactor?: 'totp' | 'enrol'; ticket?: string };
    if (r.status === 202 && d.secondFactor && d.ticket) return setStep({ kind: d.secondFactor, ticket: d.ticket });
    onSignedIn();
  };

  return (
    <main class="container">
      <article>
        <header><h1>Cluster</h1></header>
        {error && <p class="error" role="alert">{error}</p>}
        {step.kind === 'setup' && (
          <form id="setup-form" onSubmit={(e) => (e.preventDefault(), run(async () => {
            const f = e.currentTarget;
            const email = field(f, 'email');
            const password = field(f, 'password');
            await api('POST /api/v1/auth/setup', { body: { token: field(f, 'token'), email, password } });
            await afterPassword(await api('POST /api/v1/auth/login', { body: { email, password } }));
          }))}>
            <p>First start: create the first administrator with the one-time setup token the node printed.</p>
            <label>Setup token<input name="token" required autocomplete="off" /></label>
            <label>E-mail<input name="email" type="email" required autocomplete="username" /></label>
            <label>Password (12 characters or more)<input name="password" type="password" minLength={12} required autocomplete="new-password" /></label>
            <button type="submit" aria-busy={busy}>Create administrator</button>
          </form>
        )}
        {step.kind === 'password' && (
          <>
            <form id="login-form" onSubmit={(e) => (e.preventDefault(), run(async () => {
              const f = e.currentTarget;
              await afterPassword(await api('POST /api/v1/auth/login', { body: { email: field(f, 'email'), password: field(f, 'password') } }));
            }))}>
              <label>E-mail<input name="email" type="email" required autocomplete="username" /></label>
              <label>Password<input name="password" type="password" required autocomplete="current-password" /></label>
              <button type="submit" aria-busy={busy}>Sign in</button>
            </form>
            {providers.map((p) => <p key={p.id}><a role="button" class="secondary" href={`/api/v1/auth/oidc/${p.id}/start?redirect=/`}>Sign in with {p.name}</a></p>)}
          </>
        )}
        {step.kind === 'totp' && (
          <form id="totp-form" onSubmit={(e) => (e.preventDefault(), run(async () => {
            const code = field(e.currentTarget, 'code').trim();
            await api('POST /api/v1/auth/login/second-factor', { body: /^\d{6}$/.test(code) ? { ticket: step.ticket, code } : { ticket: step.ticket, recoveryCode: code } });
            history.replaceState(null, '', '/');
            onSignedIn();
          }))}>
            <label>Code from your authenticator app (or a recovery code)<input name="code" required autocomplete="one-time-code" /></label>
            <button type="submit" aria-busy={busy}>Verify</button>
          </form>
        )}
        {step.kind === 'enrol' && (
          <form id="enrol-form" onSubmit={(e) => (e.preventDefault(), run(async () => {
            if (!step.secret) {
              const r = await api('POST /api/v1/auth/totp', { body: { ticket: step.ticket } });
              const d = r.data as { secret: string; otpauthUri: string };
              return setStep({ ...step, secret: d.secret, uri: d.otpauthUri });
            }
            const r = await api('POST /api/v1/auth/totp/confirm', { body: { ticket: step.ticket, code: field(e.currentTarget, 'code') } });
            setStep({ kind: 'recovery', codes: (r.data as { recoveryCodes: string[] }).recoveryCodes });
          }))}>
            <p>This account must use two-factor sign-in. Add it to your authenticator app, then type the code it shows.</p>
            {step.secret ? (
              <>
                <p>Secret: <code id="totp-secret">{step.secret}</code></p>
                <p class="muted">{step.uri}</p>
                <label>Code<input name="code" required pattern="[0-9]{6}" autocomplete="one-time-code" /></label>
                <button type="submit" aria-busy={busy}>Turn on</button>
              </>
            ) : (
              <button type="submit" aria-busy={busy}>Show the secret</button>
            )}
          </form>
        )}
        {step.kind === 'recovery' && (
          <div id="recovery-codes">
            <p>Two-factor sign-in is on. Keep these recovery codes somewhere safe: each works once, and they are not shown again.</p>
            <ul>{step.codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul>
            <button onClick={() => (history.replaceState(null, '', '/'), onSignedIn())}>Continue</button>
          </div>
        )}
      </article>
    </main>
  );
}
