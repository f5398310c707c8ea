import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the Debian package puts Chromium (`apt-get install chromium`). */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export interface BrowserPage {
  /** Evaluates an expression in the page and returns its JSON value (promises are awaited). */
  evaluate<T>(expression: string): Promise<T>;
  /** Presses a key as a person would, on whatever has the focus (`Enter`, `Tab`). */
  press(key: 'Enter' | 'Tab'): Promise<void>;
  /** A PNG of the page at 1280×800 CSS pixels. */
  screenshot(): Promise<Buffer>;
}

export interface Browser {
  open(url: string): Promise<BrowserPage>;
  close(): Promise<void>;
}

/**
 * Headless Chromium driven over the Chrome DevTools Protocol with Node's own WebSocket: just
 * enough to open pages and evaluate expressions in them, with no browser download. `args` are
 * added to its command line (e.g. `--ignore-certificate-errors` for a test's own certificate).
 */
export async function launchChromium(args: readonly string[] = []): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'tidings-chromium-'));
  const child: ChildProcess = spawn(
    chromiumPath,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--remote-debugging-port=0',
      `--user-data-dir=${profile}`,
      ...args,
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const endpoint = await new Promise<string>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`Chromium did not start within 20 s: ${output}`)), 20_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${chromiumPath} (install it with \`apt-get install -y chromium\`): ${error.message}`));
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      const found = /DevTools listening on (ws:\/\/\S+)/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]!);
      }
    });
  });
  const socket = new WebSocket(endpoint);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`cannot reach Chromium's DevTools at ${endpoint}`));
  });
  let nextId = 1;
  const calls = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>();
  socket.onmessage = (message) => {
    const reply = JSON.parse(String(message.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const call = reply.id === undefined ? undefined : calls.get(reply.id);
    if (!call) return;
    calls.delete(reply.id!);
    if (reply.error) call.reject(new Error(reply.error.message));
    else call.resolve(reply.result);
  };
  const send = (method: string, params: object = {}, sessionId?: string): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      calls.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });

  return {
    async open(url) {
      const { targetId } = await send('Target.createTarget', { url });
      const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
      return {
        async evaluate<T>(expression: string): Promise<T> {
          const { result, exceptionDetails } = await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId);
          if (exceptionDetails) throw new Error(`the page threw: ${JSON.stringify(exceptionDetails)}`);
          return result.value as T;
        },
        async press(key) {
          const code = { Enter: 13, Tab: 9 }[key];
          const text = key === 'Enter' ? '\r' : undefined;
          await send('Input.dispatchKeyEvent', { type: 'keyDown', key, code: key, windowsVirtualKeyCode: code, ...(text ? { text } : {}) }, sessionId);
          await send('Input.dispatchKeyEvent', { type: 'keyUp', key, code: key, windowsVirtualKeyCode: code }, sessionId);
        },
        async screenshot() {
          await send('Emulation.setDeviceMetricsOverride', { width: 1280, height: 800, deviceScaleFactor: 1, mobile: false }, sessionId);
          const { data } = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
          return Buffer.from(data as string, 'base64');
        },
      };
    },
    async close() {
      await send('Browser.close').catch(() => {});
      socket.close();
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
        await exited;
      }
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
