import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

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
 * Headless Debian Chromium driven by playwright-core (no browser download: the executable is the
 * one the system has). Every page opens in one browser context, so pages share cookies and storage
 * as tabs of one browser do. `args` are added to Chromium's command line (e.g.
 * `--ignore-certificate-errors` for a test's own certificate).
 */
export async function launchChromium(args: readonly string[] = []): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(`no Chromium at ${chromiumPath}: install it with \`apt-get install -y chromium\` (or set CHROMIUM_PATH)`);
  }
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--disable-gpu', ...args], timeout: 30_000 });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: args.includes('--ignore-certificate-errors') });
  return {
    async open(url) {
      const page = await context.newPage();
      await page.goto(url, { waitUntil: 'domcontentloaded' });
      return {
        evaluate: <T>(expression: string) => page.evaluate(expression) as Promise<T>,
        press: (key) => page.keyboard.press(key),
        screenshot: () => page.screenshot({ type: 'png' }),
      };
    },
    async close() {
      await browser.close();
    },
  };
}
