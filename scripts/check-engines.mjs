#!/usr/bin/env node
// Fails `npm ci` / `npm install` early, with one clear line, where Node.js or npm is older than medssl needs:
// - Node 20.19: zlib.crc32 (the cache's record checksums) arrived in 20.15, and the test stack (vitest 4) needs 20.19;
// - npm 11: package.json's `allowScripts` (the install scripts denied below it) is honoured from npm 11 on; older npm
//   would run tfjs-node's own install script, which downloads from a host offline machines cannot reach.
// Plain JavaScript with no imports beyond node: it runs before anything is installed.
const need = { node: [20, 19, 0], npm: [11, 0, 0] };
const parse = (v) => String(v ?? '').replace(/^v/, '').split('.').map((x) => Number.parseInt(x, 10) || 0);
const below = (have, want) => {
  for (let i = 0; i < 3; i++) if ((have[i] ?? 0) !== want[i]) return (have[i] ?? 0) < want[i];
  return false;
};
const problems = [];
if (below(parse(process.versions.node), need.node)) problems.push(`Node.js ${process.versions.node} is too old: medssl needs Node.js >= ${need.node.join('.')}`);
const agent = /npm\/(\d+\.\d+\.\d+)/.exec(process.env.npm_config_user_agent ?? '');
if (agent && below(parse(agent[1]), need.npm)) problems.push(`npm ${agent[1]} is too old: medssl needs npm >= ${need.npm.join('.')} (npm install -g npm@11)`);
if (problems.length) {
  for (const p of problems) process.stderr.write(`medssl: ${p}\n`);
  process.exit(1);
}
