import type { DeadLetter, OutboxStatus, RelayStatusReport } from '@tidings/outbox';
import type { WebhookEndpoint } from '../webhook/endpoint.ts';
import { html, type Html } from './html.ts';
import { chartData, chartFigure } from './charts.ts';
import { relayState } from './live-status.ts';
import type { Sample } from './sampler.ts';

/** What every page needs to know about the request it answers. */
export interface PageContext {
  /** Where the dashboard is mounted, ending in `/`. */
  readonly base: string;
  /** Shown under the title: which database (its password masked). */
  readonly label: string;
  /** Whether to show action buttons (the request may act). */
  readonly canAct: boolean;
}

type Section = 'relays' | 'dead-letters' | 'endpoints';

export function layout(ctx: PageContext, title: string, section: Section | undefined, body: Html): string {
  const link = (to: Section, path: string, text: string) =>
    html`<li><a href="${ctx.base}${path}"${section === to ? html` aria-current="page"` : ''}>${text}</a></li>`;
  return `<!doctype html>${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · tidings</title><link rel="stylesheet" href="${ctx.base}dashboard.css"><script src="${ctx.base}dashboard.js" defer></script></head>
<body><header><p class="brand">tidings <span>${ctx.label}</span></p>
<nav aria-label="Dashboard"><ul>${link('relays', '', 'Relays')}${link('dead-letters', 'dead-letters', 'Dead letters and parked keys')}${link('endpoints', 'endpoints', 'Webhook endpoints')}</ul></nav></header>
<main>${body}</main></body></html>`}`;
}

const seconds = (value: number) => value.toFixed(1);
const time = (value: Date | string | null | undefined) => (value ? new Date(value).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '');

const notices: Record<string, (n: number) => string> = {
  retry: (n) => `Queued ${n} dead letter${n === 1 ? '' : 's'} for another delivery.`,
  discard: (n) => `Discarded ${n} dead letter${n === 1 ? '' : 's'}.`,
  enable: () => 'Endpoint enabled: deliveries resume where they stopped.',
  disable: () => 'Endpoint disabled: its place is kept until it is enabled again.',
};

/** The message of a finished action, from its fixed wording (never from text in the URL). */
export function notice(done: string | null, count: string | null): Html {
  const say = done === null ? undefined : notices[done];
  return say ? html`<p class="notice" role="status">${say(Number(count ?? 0) || 0)}</p>` : html``;
}

export function overviewPage(ctx: PageContext, report: OutboxStatus, done: Html, samples: readonly Sample[]): string {
  const stalled = report.relays.filter((r) => r.stalled || r.abandoned || r.unavailableSince);
  const body = html`<h1>Relays</h1>${done}
<p id="summary" data-live="${ctx.base}live" aria-live="polite" role="status">${summary(report.relays)}</p>
<div class="charts">${chartFigure('throughput', chartData('throughput', samples))}${chartFigure('lag', chartData('lag', samples))}</div>
<section aria-labelledby="feeds-title"><h2 id="feeds-title">Feeds and the watermark</h2>
<p data-feeds>${feedsLine(report)}</p>${holders(report)}</section>
${stalled.length === 0 ? '' : html`<section aria-labelledby="attention-title"><h2 id="attention-title">Needs attention</h2><ul>${stalled.map((r) => html`<li><a href="${ctx.base}relay?name=${encodeURIComponent(r.relay)}">${r.relay}</a>: ${attention(r)}</li>`)}</ul></section>`}
<section aria-labelledby="relays-title"><h2 id="relays-title">Every relay</h2>
${report.relays.length === 0 ? html`<p>No relay has run yet.</p>` : html`<table data-relays><caption>Lag per relay, updated live while this page is open</caption>
<thead><tr><th scope="col">Relay</th><th scope="col">State</th><th scope="col" class="n">Events behind</th><th scope="col" class="n">Oldest (s)</th><th scope="col" class="n">Dead letters</th><th scope="col" class="n">Parked keys</th><th scope="col" class="n">Workers</th></tr></thead>
<tbody>${report.relays.map((r) => html`<tr data-relay="${r.relay}"><th scope="row"><a href="${ctx.base}relay?name=${encodeURIComponent(r.relay)}">${r.relay}</a></th><td data-state="${relayState(r)}">${relayState(r)}</td><td class="n">${r.lagEvents}</td><td class="n">${seconds(r.lagSeconds)}</td><td class="n">${r.deadLetters > 0 ? html`<a href="${ctx.base}dead-letters?relay=${encodeURIComponent(r.relay)}">${r.deadLetters}</a>` : '0'}</td><td class="n">${r.parkedKeys}</td><td class="n">${r.workers.length}</td></tr>`)}</tbody></table>`}
</section>`;
  return layout(ctx, 'Relays', 'relays', body);
}

function summary(relays: readonly RelayStatusReport[]): string {
  const behind = relays.reduce((sum, r) => sum + r.lagEvents, 0);
  const stalled = relays.filter((r) => r.stalled).length;
  const abandoned = relays.filter((r) => r.abandoned).length;
  return `${relays.length} relays, ${behind} events behind, ${stalled} stalled, ${abandoned} abandoned.`;
}

function feedsLine(report: OutboxStatus): string {
  const { feeds } = report;
  return feeds.events === 0
    ? 'Nothing holds the feeds back.'
    : `${feeds.events} committed events held back (oldest ${seconds(feeds.seconds)} s)${feeds.stalled ? ': stalled' : ''}.`;
}

function holders(report: OutboxStatus): Html {
  const list = report.feeds.holders;
  if (list.length === 0) return html``;
  return html`<table><caption>Transactions holding a partition's commit lock</caption>
<thead><tr><th scope="col">Partition</th><th scope="col">Held by</th><th scope="col" class="n">Commits waiting</th><th scope="col" class="n">Longest wait (s)</th></tr></thead>
<tbody>${list.map((h) => html`<tr><th scope="row">${h.partition}</th><td>${h.preparedTransaction !== null ? `prepared transaction "${h.preparedTransaction}" (prepared ${seconds(h.preparedSeconds ?? 0)} s ago)` : `pid ${h.pid} (${h.applicationName || 'no application name'})`}</td><td class="n">${h.waiting}</td><td class="n">${seconds(h.waitedSeconds)}</td></tr>`)}</tbody></table>`;
}

function attention(relay: RelayStatusReport): Html {
  if (relay.abandoned) {
    return html`abandoned: no worker and no progress; retention keeps every event after its cursor. If it will not run again: <code>tidings relay drop ${relay.relay}</code>`;
  }
  if (relay.unavailableSince) return html`destination unavailable since ${time(relay.unavailableSince)} (nothing is counted against the events)`;
  return html`stalled: ${relay.lagEvents} events behind, ${relay.workers.length === 0 ? 'no worker' : 'no progress'}`;
}

export function relayPage(ctx: PageContext, report: OutboxStatus, name: string): string {
  const relay = report.relays.find((r) => r.relay === name);
  if (!relay) return layout(ctx, 'Relay', 'relays', html`<h1>Relay ${name}</h1><p>No relay of that name has run.</p>`);
  const body = html`<h1>Relay ${relay.relay}</h1>
<p id="summary" data-live="${ctx.base}live?relay=${encodeURIComponent(relay.relay)}" aria-live="polite" role="status">${relayLine(relay)}</p>
${relay.stalled || relay.abandoned || relay.unavailableSince ? html`<p class="warning">${attention(relay)}</p>` : ''}
${relay.unavailableSince ? html`<p>Last error: <code>${relay.partitions.find((p) => p.unavailable)?.unavailable?.error ?? ''}</code></p>` : ''}
<p>${relay.deadLetters} dead letters, ${relay.parkedKeys} keys parked behind them (${relay.parkedEvents} events waiting). <a href="${ctx.base}dead-letters?relay=${encodeURIComponent(relay.relay)}">See them</a>.</p>
<p>Workers: ${relay.workers.map((w) => w.worker).join(', ') || 'none'}</p>
<table data-partitions><caption>Lag per partition, updated live while this page is open</caption>
<thead><tr><th scope="col">Partition</th><th scope="col">Lease owner</th><th scope="col" class="n">Events behind</th><th scope="col" class="n">Oldest (s)</th><th scope="col">Cursor moved</th><th scope="col">Cursor</th></tr></thead>
<tbody>${relay.partitions.map((p) => html`<tr data-partition="${p.partition}"><th scope="row">${p.partition}</th><td>${p.owner ?? ''}</td><td class="n">${p.lagEvents}</td><td class="n">${seconds(p.lagSeconds)}</td><td>${time(p.movedAt)}</td><td><code>${p.cursor}</code></td></tr>`)}</tbody></table>`;
  return layout(ctx, `Relay ${relay.relay}`, 'relays', body);
}

function relayLine(relay: RelayStatusReport): string {
  return `${relayState(relay)}: ${relay.lagEvents} events behind, oldest ${seconds(relay.lagSeconds)} s.`;
}

/** An action's name as its buttons say it. */
const verb = (action: string) => (action === 'rotate-secret' ? 'rotate secret' : action);

/** A form that asks for a confirmation first (the server answers with a confirmation page). */
function actionForm(ctx: PageContext, action: string, id: string, label: string): Html {
  const text = verb(action);
  return html`<form method="post" action="${ctx.base}act" class="inline"><input type="hidden" name="action" value="${action}"><input type="hidden" name="id" value="${id}"><button type="submit" aria-label="${label}">${text[0]!.toUpperCase() + text.slice(1)}</button></form>`;
}

export function deadLettersPage(ctx: PageContext, letters: readonly DeadLetter[], relay: string | null, done: Html, limit: number): string {
  const parked = letters.filter((l) => l.parksKey);
  const body = html`<h1>Dead letters${relay ? html` of ${relay}` : ''}</h1>${done}
<form method="get" action="${ctx.base}dead-letters" class="filter"><label for="relay-filter">Relay</label> <input id="relay-filter" name="relay" value="${relay ?? ''}"> <button type="submit">Show</button></form>
<section aria-labelledby="parked-title"><h2 id="parked-title">Parked keys</h2>
${parked.length === 0 ? html`<p>No key is parked.</p>` : html`<table><caption>Keys whose later events wait behind a dead letter</caption>
<thead><tr><th scope="col">Relay</th><th scope="col">Key</th><th scope="col">Held by</th><th scope="col" class="n">Events waiting</th></tr></thead>
<tbody>${parked.map((l) => html`<tr><td>${l.relay}</td><th scope="row">${l.key ?? ''}</th><td><a href="#letter-${l.id}">dead letter #${l.id}</a></td><td class="n">${l.parkedEvents}</td></tr>`)}</tbody></table>`}</section>
<section aria-labelledby="letters-title"><h2 id="letters-title">Dead letters</h2>
${letters.length === 0 ? html`<p>No dead letters.</p>` : html`<p>${letters.length} shown, oldest first${letters.length >= limit ? ` (the first ${limit})` : ''}.</p>`}
${letters.map((l) => letter(ctx, l))}</section>`;
  return layout(ctx, 'Dead letters', 'dead-letters', body);
}

function letter(ctx: PageContext, l: DeadLetter): Html {
  return html`<article id="letter-${l.id}" class="letter" aria-labelledby="letter-${l.id}-title">
<h3 id="letter-${l.id}-title">#${l.id} ${l.topic}</h3>
<dl><dt>Relay</dt><dd>${l.relay}</dd><dt>Event</dt><dd><code>${l.eventId}</code> (partition ${l.partition}, written ${time(l.eventCreatedAt)})</dd>
<dt>Key</dt><dd>${l.key ?? '(none)'}${l.parksKey ? ` — parked, ${l.parkedEvents} events wait behind it` : ''}</dd><dt>Tenant</dt><dd>${l.tenant ?? '(none)'}</dd>
<dt>Status</dt><dd>${l.status}, dead since ${time(l.deadAt)}</dd></dl>
${ctx.canAct && l.status === 'dead' ? html`<p class="actions">${actionForm(ctx, 'retry', l.id, `Retry dead letter #${l.id}`)} ${actionForm(ctx, 'discard', l.id, `Discard dead letter #${l.id}`)}</p>` : ''}
<h4>Payload</h4><pre class="payload">${JSON.stringify(l.payload, null, 2)}</pre>
<table><caption>Headers</caption><thead><tr><th scope="col">Name</th><th scope="col">Value</th></tr></thead>
<tbody>${Object.entries(l.headers).map(([name, value]) => html`<tr><th scope="row">${name}</th><td>${value}</td></tr>`)}</tbody></table>
<table><caption>Attempts</caption><thead><tr><th scope="col" class="n">Attempt</th><th scope="col">At</th><th scope="col">Error</th></tr></thead>
<tbody>${l.errors.map((e) => html`<tr><th scope="row" class="n">${e.attempt}</th><td>${time(e.at)}</td><td>${e.message}</td></tr>`)}</tbody></table></article>`;
}

export function endpointsPage(ctx: PageContext, endpoints: readonly WebhookEndpoint[], report: OutboxStatus, relayOf: (id: string) => string, done: Html): string {
  const relays = new Map(report.relays.map((r) => [r.relay, r]));
  const rows = endpoints.map((e) => {
    const relay = relays.get(relayOf(e.id));
    const moved = relay?.partitions.reduce<Date | null>((last, p) => (!last || p.movedAt > last ? p.movedAt : last), null);
    const state = e.enabled ? 'enabled' : `disabled (${e.disabled?.reason ?? ''}${e.disabled?.detail ? `: ${e.disabled.detail}` : ''})`;
    const health = !e.enabled ? '' : e.failingSince ? `failing since ${time(e.failingSince)}` : 'healthy';
    return html`<tr data-endpoint="${e.id}"><th scope="row">${e.id}${e.description ? html`<br><small>${e.description}</small>` : ''}</th><td>${e.url}</td><td>${e.topics?.join(', ') ?? 'every topic'}</td><td>${e.tenant ?? 'any'}</td>
<td data-field="state">${state}</td><td>${health}</td><td>${e.lastError ? `${e.lastError.message} (${time(e.lastError.at)})` : ''}</td><td>${time(moved)}</td><td class="n">${relay?.lagEvents ?? 0}</td>
${ctx.canAct ? html`<td class="actions">${actionForm(ctx, e.enabled ? 'disable' : 'enable', e.id, `${e.enabled ? 'Disable' : 'Enable'} endpoint ${e.id}`)} ${actionForm(ctx, 'rotate-secret', e.id, `Rotate the signing secret of endpoint ${e.id}`)}</td>` : ''}</tr>`;
  });
  const body = html`<h1>Webhook endpoints</h1>${done}
${endpoints.length === 0 ? html`<p>No webhook endpoint is registered.</p>` : html`<table><caption>Every registered endpoint with its health (URL credentials shown as ***)</caption>
<thead><tr><th scope="col">Endpoint</th><th scope="col">URL</th><th scope="col">Topics</th><th scope="col">Tenant</th><th scope="col">State</th><th scope="col">Health</th><th scope="col">Last error</th><th scope="col">Last delivery</th><th scope="col" class="n">Events behind</th>${ctx.canAct ? html`<th scope="col">Actions</th>` : ''}</tr></thead>
<tbody>${rows}</tbody></table>`}`;
  return layout(ctx, 'Webhook endpoints', 'endpoints', body);
}

/** What a secret rotation's confirmation adds: the endpoint version it was shown at, and the grace periods to choose from. */
export interface RotationChoice {
  readonly version: number;
  readonly graceChoices: ReadonlyArray<{ readonly ms: number; readonly label: string }>;
  /** The choice selected at first: the library's default. */
  readonly defaultMs: number;
}

/**
 * The confirmation step of an action: the button is focused, so Enter confirms and Tab reaches
 * Cancel. A rotation also asks how long the old secret keeps signing (the library's default
 * chosen) and carries the endpoint's version, so that submitting it twice rotates once.
 */
export function confirmPage(ctx: PageContext, action: string, id: string, question: Html, back: string, rotation?: RotationChoice): string {
  const fields = rotation
    ? html`<input type="hidden" name="version" value="${rotation.version}">
<p><label for="grace">The old secret keeps signing for</label> <select id="grace" name="grace">${rotation.graceChoices.map((c) => html`<option value="${c.ms}"${c.ms === rotation.defaultMs ? html` selected` : ''}>${c.label}${c.ms === rotation.defaultMs ? ' (the default)' : ''}</option>`)}</select></p>
<p>Every request is signed with both secrets meanwhile, so the receiver can switch without losing any. The new secret is shown once, on the next page.</p>`
    : '';
  const body = html`<h1>Confirm</h1><p id="question">${question}</p>
<form method="post" action="${ctx.base}act" aria-describedby="question"><input type="hidden" name="action" value="${action}"><input type="hidden" name="id" value="${id}"><input type="hidden" name="confirmed" value="yes">${fields}
<button type="submit" autofocus>Yes, ${verb(action).split(' ')[0]}</button> <a href="${ctx.base}${back}">Cancel</a></form>`;
  return layout(ctx, 'Confirm', undefined, body);
}

/** The one page that shows a new signing secret: served with `Cache-Control: no-store`, never listed anywhere. */
export function rotatedPage(ctx: PageContext, endpoint: WebhookEndpoint, secret: string, previousValidUntil: Date | null): string {
  const body = html`<h1>New signing secret</h1>
<p class="notice" role="status">The signing secret of ${endpoint.url} (${endpoint.id}) was rotated.</p>
<p><label for="secret">New secret</label>: <output id="secret" data-secret><code>${secret}</code></output></p>
<p class="warning">Store it now, in the receiver's configuration: it is not shown again, here or anywhere else.</p>
<p>${previousValidUntil ? `The previous secret keeps signing until ${time(previousValidUntil)}; requests carry both signatures until then.` : 'The previous secret no longer signs: requests carry the new signature only.'}</p>
<p><a href="${ctx.base}endpoints">Back to the endpoints</a></p>`;
  return layout(ctx, 'New signing secret', 'endpoints', body);
}

export function messagePage(ctx: PageContext, title: string, message: string): string {
  return layout(ctx, title, undefined, html`<h1>${title}</h1><p>${message}</p>`);
}
