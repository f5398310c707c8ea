/** Markup that is already safe: built by `html`, never from a plain string. */
export class Html {
  readonly #text: string;
  constructor(text: string) {
    this.#text = text;
  }
  toString(): string {
    return this.#text;
  }
}

const entities: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for an element's content or a quoted attribute value. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => entities[c]!);
}

/**
 * A template whose every interpolated value is escaped, except `Html` built by this same tag, and
 * arrays of either (joined). null, undefined and false render nothing. Event payloads and headers
 * are written by whoever published them: they must reach the page as text.
 *
 * @example
 * html`<td>${letter.topic}</td>`; // '<td>&lt;script&gt;…</td>' for a hostile topic
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += part(values[i]) + strings[i + 1]!;
  return new Html(out);
}

function part(value: unknown): string {
  if (value instanceof Html) return value.toString();
  if (Array.isArray(value)) return value.map(part).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(value);
}
