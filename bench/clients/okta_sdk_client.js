// Scenario 3 client (bench/run): the official Okta Node.js SDK with its built-in 429 retry
// (default maxRetries 2: it sleeps until X-Rate-Limit-Reset - Date + 1 s). K concurrent
// workers share N GETs of /api/v1/users. Prints one JSON line like clients/retry_loop.py.
// Env: ORG_URL, N, K, optional HTTPS_PROXY (the SDK's https-proxy-agent), NODE_EXTRA_CA_CERTS.
'use strict';
const okta = require('@okta/okta-sdk-nodejs');

async function main() {
  const orgUrl = process.env.ORG_URL;
  const n = parseInt(process.env.N, 10);
  const k = parseInt(process.env.K, 10);
  const client = new okta.Client({
    orgUrl,
    token: 'bench-token',
    cacheMiddleware: null, // every GET must reach the server, as distinct reads would
    httpsProxy: process.env.HTTPS_PROXY || undefined,
  });
  const res = { ok: 0, failed: 0, client_429: 0, retries: 0, errors: 0, statuses: {} };
  client.requestExecutor.on('backoff', () => { res.retries += 1; res.client_429 += 1; });
  let tickets = n;
  const t0 = Date.now();
  async function worker() {
    while (tickets > 0) {
      tickets -= 1;
      try {
        await client.http.getJson(`${orgUrl}/api/v1/users?limit=1`);
        res.ok += 1;
        res.statuses['200'] = (res.statuses['200'] || 0) + 1;
      } catch (e) {
        res.failed += 1;
        const s = String(e.status || 'error');
        res.statuses[s] = (res.statuses[s] || 0) + 1;
        if (e.status === 429) res.client_429 += 1;
        else res.errors += 1;
      }
    }
  }
  await Promise.all(Array.from({ length: k }, worker));
  const t1 = Date.now();
  res.completion_s = (t1 - t0) / 1000;
  res.start_unix = t0 / 1000;
  res.end_unix = t1 / 1000;
  process.stdout.write(JSON.stringify(res) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
