/**
 * Waits until `probe` returns something other than undefined or false, polling every 50 ms, and
 * returns it; fails after `timeoutMs` saying what did not happen (and the probe's last error).
 *
 * @example
 * await waitUntil('the event was applied', async () => (await applied()).length === 1);
 */
export async function waitUntil<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
