import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('rotates a signing secret with the keys tidings endpoints uses: the embedded database\'s key file', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'tidings-dashboard-'));
    const options = { cwd: folder, unset: ['TIDINGS_SECRET_KEY', 'TIDINGS_SECRET_KEY_OLD'] };
    try {
      expect((await runTidings(['migrate'], options)).code).toBe(0);
      const added = await runTidings(['endpoints', 'add', '--url', 'http://127.0.0.1:9/in', '--allow', '127.0.0.0/8'], options);
      expect(added.code).toBe(0);
      const id = /endpoint (\S+) →/.exec(added.stdout)![1]!;
      const run = startTidings(['dashboard', '--port', '0'], options);
      try {
        const [, origin, token] = await waitUntil('the command printed its URL', () => /(http:\/\/127\.0\.0\.1:\d+\/)\?token=([\w-]{43})\n/.exec(run.stdout()) ?? undefined, 60_000);
        const post = (body: string) => fetch(`${origin}act`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' }, body });
        const confirmation = await post(`action=rotate-secret&id=${id}`);
        expect(confirmation.status).toBe(200);
        const version = /name="version" value="(\d+)"/.exec(await confirmation.text())![1];
        const rotated = await post(`action=rotate-secret&id=${id}&confirmed=yes&version=${version}&grace=0`);
        expect(rotated.status).toBe(200);
        const secret = /data-secret><code>(whsec_[^<]+)<\/code>/.exec(await rotated.text())?.[1];
        expect(secret).toBeDefined();
        expect(run.stdout() + run.stderr()).not.toContain(secret);
        run.signal('SIGTERM');
        expect((await run.exited).code).toBe(0);
      } finally {
        await run.kill();
      }
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('refuses a port that is not one, before opening anything', async () => {
    const run = await runTidings(['dashboard', '--port', 'eighty']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--port takes a port number from 0 to 65535, got "eighty"');
  });
});
