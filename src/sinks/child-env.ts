/**
 * The environment of hook and reload commands (issue 12 item 9). They used to inherit staplerd's whole
 * environment, STAPLERD_ADMIN_TOKEN and STAPLERD_REDIS_PASSWORD included: now they get a small base set,
 * the names the operator allow-lists, and the event's own variables, and never a secret.
 */

/** What a command needs to run at all: find programs, speak a locale, tell the time. */
const BASE = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ'];
/** Never passed on, even when allow-listed: the admin token and the Redis password. */
const SECRETS = new Set(['STAPLERD_ADMIN_TOKEN', 'STAPLERD_REDIS_PASSWORD']);
/** Longest value passed (a subject can be long; an environment should not be). */
const MAX_VALUE = 1024;

/**
 * A certificate field as an environment value. Certificate fields are hostile, and an environment value
 * cannot hold NUL (spawn fails with ERR_INVALID_ARG_VALUE, so the hook would fail for good): control
 * characters become '?', and the value is cut to a bound.
 */
export function envValue(v: string): string {
  // eslint-disable-next-line no-control-regex
  return v.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').slice(0, MAX_VALUE);
}

/** The base set and `allow` from `from`, secrets left out, then `vars` (sanitised) on top. */
export function childEnv(allow: readonly string[], vars: Record<string, string>, from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of [...BASE, ...allow]) {
    const v = from[k];
    if (v !== undefined && !SECRETS.has(k)) env[k] = v;
  }
  for (const [k, v] of Object.entries(vars)) env[k] = envValue(v);
  return env;
}
