// What every page that changes something does: run the change, show the API's error (code and
// message) if it fails, read the page's data again if it worked.
import { useEffect, useState } from 'preact/hooks';
import { describe } from './api.ts';

export function useAction(reload: () => Promise<unknown>) {
  const [error, setError] = useState('');
  /** Runs a change; resolves to what `fn` returned, or undefined when it failed (the error is shown). */
  const act = async <T,>(fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      const result = await fn();
      setError('');
      await reload();
      return result;
    } catch (err) {
      setError(describe(err));
      return undefined;
    }
  };
  return { error, setError, act };
}

/** Reads the page's data now and every `ms` while the page is shown (live status). */
export function usePolling(load: () => Promise<unknown>, ms: number, deps: unknown[]) {
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), ms);
    return () => clearInterval(timer);
  }, deps);
}
