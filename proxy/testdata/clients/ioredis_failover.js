// An ioredis client of geofailover proxy across a failover: the Node.js
// twin of redispy_failover.py (see there). Run by proxy's
// TestOtherLanguages.
//
// usage: node ioredis_failover.js HOST PORT DURATION
"use strict";
const Redis = require("ioredis");

const [host, portArg, durationArg] = process.argv.slice(2);
const port = Number(portArg);
const duration = Number(durationArg) * 1000;
const start = Date.now();
const buckets = Math.floor(duration / 1000) + 1;
const kinds = ["pipeline", "transaction", "blocking_pop", "pubsub_received"];
const ok = {}, failed = {};
for (const k of kinds) { ok[k] = new Array(buckets).fill(0); failed[k] = new Array(buckets).fill(0); }
const errors = [];

function record(kind, success, err) {
  const b = Math.min(Math.floor((Date.now() - start) / 1000), buckets - 1);
  (success ? ok : failed)[kind][b]++;
  if (err && errors.length < 10) errors.push(`${kind}: ${err.name}: ${err.message}`);
}

async function main() {
  const opts = { host, port, commandTimeout: 2000, maxRetriesPerRequest: 1, lazyConnect: false };
  const r = new Redis(opts);
  const sub = new Redis(opts);
  sub.on("message", () => record("pubsub_received", true));
  sub.on("error", (e) => record("pubsub_received", false, e));
  r.on("error", () => {});
  await sub.subscribe("news");
  let i = 0;
  while (Date.now() - start < duration) {
    i++;
    const key = `js:k${i % 8}`;
    try {
      const res = await r.pipeline().set(key, i).get(key).exec();
      if (res[0][0] || res[1][0] || res[1][1] !== String(i)) throw new Error(`pipeline replies ${JSON.stringify(res)}`);
      record("pipeline", true);
    } catch (e) { record("pipeline", false, e); }
    try {
      const res = await r.multi().incr("js:counter").get("js:counter").exec();
      if (!res || res[0][0] || String(res[0][1]) !== res[1][1]) throw new Error(`transaction replies ${JSON.stringify(res)}`);
      record("transaction", true);
    } catch (e) { record("transaction", false, e); }
    try {
      await r.rpush("js:queue", i);
      const v = await r.blpop("js:queue", 1);
      if (v === null) throw new Error("BLPOP timed out");
      record("blocking_pop", true);
    } catch (e) { record("blocking_pop", false, e); }
    try { await r.publish("news", `m${i}`); } catch (e) { /* a lost publish shows as a missing receipt */ }
    await new Promise((res) => setTimeout(res, 5));
  }
  console.log(JSON.stringify({ ok, failed, errors }));
  r.disconnect();
  sub.disconnect();
}

main().catch((e) => { console.error(e); process.exit(1); });
