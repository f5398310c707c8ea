import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { runTidings, startTidings } from '../../../test/support/cli.ts';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('cli_dashboard');
});
afterAll(() => outbox?.close());

describe('tidings dashboard', () => {
  it('prints a loopback URL with a random token, serves the page to that token only, and stops on SIGTERM', async () => {
    // The server trusts local connections, so the password is never checked: only its masking is.
    const url = new URL(services.postgres);
    url.password = 'not-to-be-shown';
    const run = startTidings(['dashboard', '--port', '0', '--database', url.href, '--schema', outbox.schema]);
    try {
      const printed = await waitUntil('the command printed its URL', () => /(http:\/\/127\.0\.0\.1:\d+\/)\?token=([\w-]{43})\n/.exec(run.stdout()) ?? undefined, 60_000);
      const [, origin, token] = printed;
      expect(run.stdout()).not.toContain('not-to-be-shown');
      expect(run.stdout()).toContain(':***@');
      expect((await fetch(origin!)).status).toBe(401);
      const signIn = await fetch(`${origin}?token=${token}`, { redirect: 'manual' });
      expect(signIn.status).toBe(303);
      const page = await fetch(origin!, { headers: { cookie: signIn.headers.get('set-cookie')!.split(';')[0]! } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<h1>Relays</h1>');
      const script = await fetch(`${origin}dashboard.js`, { headers: { authorization: `Bearer ${token}` } });
      expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
      expect(await script.text()).toContain('EventSource');
      run.signal('SIGTERM');
      expect((await run.exited).code).toBe(0);
    } finally {
      await run.kill();
    }
  });

  it('refuses a port that is not one, before opening anything', async () => {
    const run = await runTidings(['dashboard', '--port', 'eighty']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--port takes a port number from 0 to 65535, got "eighty"');
  });
});
