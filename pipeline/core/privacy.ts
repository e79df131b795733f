// Keys that stand for identifiers (patient, study, series ids; path components when data.hashPaths is on), and the
// names outputs give to input files. Every key is HMAC-SHA-256 under one secret (RFC 2104), so nobody without the
// secret can test guessed ids against a key, however few ids there are. The secret comes from a key file named in
// the config (data.privacyKeyFile) or from MEDSSL_PRIVACY_KEY; it is kept in a private field that no JSON, log or
// cache sees. Without one, a built-in public key is used, and `warnPublicKey` says so on stderr.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import type { Config } from '../../schemas/config.js';
import type { FailureRecord } from '../../schemas/records.js';
import { MedsslError } from './failures.js';

export const PRIVACY_KEY_ENV = 'MEDSSL_PRIVACY_KEY';
/** Shorter secrets are refused: 16 random bytes are 128 bits, beyond any offline search. */
export const MIN_SECRET_BYTES = 16;
/** The key used when no secret is set. It is public (it is written here), so its keys are not private. */
const PUBLIC_KEY = 'medssl built-in public key: set MEDSSL_PRIVACY_KEY or data.privacyKeyFile';

/** What a key stands for: the same id gives different keys as a patient and as a study. */
export type KeyKind = 'patient' | 'study' | 'series' | 'path';

/** The secret behind every key, and the one function that derives them. */
export class Keyring {
  readonly #secret: Buffer;
  /** Where the secret came from. */
  readonly source: 'key file' | typeof PRIVACY_KEY_ENV | 'public built-in key';
  /** Names the secret without revealing it (an HMAC of a fixed label): the cache stores this, never the secret. */
  readonly id: string;

  constructor(secret: Buffer, source: Keyring['source']) {
    this.#secret = secret;
    this.source = source;
    this.id = this.mac('medssl key id').slice(0, 16);
  }

  /** True when no secret was set: keys are then stable but anyone can recompute them. */
  get isPublic(): boolean {
    return this.source === 'public built-in key';
  }

  /**
   * The key of an identifier: the first 32 hex digits (128 bits) of HMAC-SHA-256(secret, kind NUL value). The same
   * secret and value give the same key in DICOM, NIfTI, .npz and .npy items alike; undefined for an empty value.
   */
  key(kind: KeyKind, value: string | undefined): string | undefined {
    if (value === undefined || value === '') return undefined;
    return this.mac(`${kind}\u0000${value}`).slice(0, 32);
  }

  private mac(message: string): string {
    return crypto.createHmac('sha256', this.#secret).update(message, 'utf8').digest('hex');
  }

  /** Serialises as its source and id only. */
  toJSON(): { source: string; id: string } {
    return { source: this.source, id: this.id };
  }
}

const byFile = new Map<string, Keyring>();
let fromEnvironment: { value: string | undefined; keyring: Keyring } | undefined;

/**
 * The keyring for a run: the key file named in the config when there is one, else MEDSSL_PRIVACY_KEY, else the public
 * built-in key. A key file that cannot be read, or a secret shorter than MIN_SECRET_BYTES, is an error (exit 1),
 * never a silent fall back to the public key. Trailing white space (a final newline) is not part of the secret.
 */
export function privacyKeyring(opts: { keyFile?: string | null } = {}): Keyring {
  if (opts.keyFile) {
    const file = path.resolve(opts.keyFile);
    let ring = byFile.get(file);
    if (!ring) {
      let raw: Buffer;
      try {
        raw = fs.readFileSync(file);
      } catch (err) {
        throw new MedsslError('unreadable', 'data.privacyKeyFile', `the key file cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      ring = new Keyring(checked(trimEnd(raw), 'data.privacyKeyFile'), 'key file');
      byFile.set(file, ring);
    }
    return ring;
  }
  const value = process.env[PRIVACY_KEY_ENV] || undefined;
  if (!fromEnvironment || fromEnvironment.value !== value) {
    const ring = value === undefined ? new Keyring(Buffer.from(PUBLIC_KEY), 'public built-in key') : new Keyring(checked(trimEnd(Buffer.from(value, 'utf8')), PRIVACY_KEY_ENV), PRIVACY_KEY_ENV);
    fromEnvironment = { value, keyring: ring };
  }
  return fromEnvironment!.keyring;
}

function checked(secret: Buffer, where: string): Buffer {
  if (secret.length < MIN_SECRET_BYTES) {
    throw new MedsslError('invalid-value', where, `the secret is ${secret.length} bytes; at least ${MIN_SECRET_BYTES} are needed (e.g. openssl rand -hex 32)`);
  }
  return secret;
}

function trimEnd(b: Buffer): Buffer {
  let n = b.length;
  while (n > 0 && (b[n - 1] === 0x0a || b[n - 1] === 0x0d || b[n - 1] === 0x20 || b[n - 1] === 0x09)) n--;
  return b.subarray(0, n);
}

let warned = false;

/**
 * Says loudly, once per process, on stderr, that keys are being written under the public built-in key. Called by
 * every path that writes keys (ingest, `medssl decode`); silent in worker threads, whose process already said it.
 */
export function warnPublicKey(keyring: Keyring, out: NodeJS.WritableStream = process.stderr): void {
  if (!keyring.isPublic || warned || !isMainThread) return;
  warned = true;
  const bar = '!'.repeat(78);
  out.write(`${bar}\n` +
    '  WARNING: no privacy secret set. Patient, study and series keys (and hashed paths) are made with\n' +
    '  medssl\'s public built-in key: they are stable, but anyone can recompute them, so guessable ids\n' +
    '  (medical record numbers) can be found from their keys. Set a secret of at least 16 bytes:\n' +
    `    export ${PRIVACY_KEY_ENV}=$(openssl rand -hex 32)     or     data.privacyKeyFile: FILE\n` +
    `${bar}\n`);
}

/**
 * How outputs name input files: relative to the input root they were found under (never absolute: hospital paths
 * carry names and record numbers), or, with `hash`, every path component replaced by its keyed hash (`path` kind,
 * 16 hex digits), so an output shows the tree's shape but none of its names.
 */
export class SourceNames {
  /** Absolute input roots, longest first (a path is named relative to the deepest root that holds it). */
  private readonly roots: string[];

  constructor(inputs: string[], private readonly keyring: Keyring, readonly hash: boolean) {
    const roots = inputs.map((input) => {
      const abs = path.resolve(input);
      let dir = false;
      try {
        dir = fs.statSync(abs).isDirectory();
      } catch {
        // a missing input is reported by the source stage; name it by its folder
      }
      return dir ? abs : path.dirname(abs);
    });
    this.roots = [...new Set(roots)].sort((a, b) => b.length - a.length);
  }

  /** One path component as outputs show it. */
  component(name: string): string {
    if (!this.hash || name === '..' || name === '.' || name === '') return name;
    return this.keyring.key('path', name)!.slice(0, 16);
  }

  /** A relative path (`/`-separated) with each component named. */
  relative(rel: string): string {
    return rel.split('/').map((c) => this.component(c)).join('/');
  }

  /** A file as outputs show it: relative to its input root (components hashed with `hash`). */
  file(p: string): string {
    const abs = path.resolve(p);
    const root = this.roots.find((r) => abs === r || abs.startsWith(r + path.sep));
    const rel = root === undefined ? path.basename(abs) : abs === root ? path.basename(root) : path.relative(root, abs);
    return this.relative(rel.split(path.sep).join('/'));
  }

  /** A source id (`dir/file.dcm#train/3`): the path part named, the container entry kept. */
  id(id: string): string {
    const hash = id.indexOf('#');
    return hash < 0 ? this.relative(id) : `${this.relative(id.slice(0, hash))}${id.slice(hash)}`;
  }

  /**
   * Free text (a failure's reason) with every path under an input root named. Where a path ends in text is found
   * component by component: a component may hold spaces when the file system has it so, else it ends at white
   * space or at one of ' " ` : , ; ( ).
   */
  text(s: string): string {
    let out = s;
    for (const root of this.roots) {
      let from = 0;
      for (let at = out.indexOf(root, from); at >= 0; at = out.indexOf(root, from)) {
        const end = pathEnd(out, at + root.length, root);
        const named = this.file(out.slice(at, end));
        out = out.slice(0, at) + named + out.slice(end);
        from = at + named.length;
      }
    }
    return out;
  }

  /** A failure record as outputs show it. */
  failure(f: FailureRecord): FailureRecord {
    // The file itself first, whole (its name may hold spaces), then whatever paths the rest of the text holds.
    const own = path.isAbsolute(f.file) ? this.file(f.file) : undefined;
    const file = own ?? this.text(f.file);
    const reason = this.text(path.isAbsolute(f.file) ? f.reason.split(f.file).join(own!) : f.reason);
    return { ...f, file, reason };
  }

  /** The key under which the cache remembers a file's stamp: a keyed hash of its absolute path, not the path. */
  stampKey(p: string): string {
    return this.keyring.key('path', path.resolve(p))!;
  }
}

/** Where the path that starts with `root` at `start - root.length` ends in `s` (see SourceNames.text). */
function pathEnd(s: string, start: number, root: string): number {
  let at = start;
  let dir = root;
  while (s[at] === path.sep) {
    const rest = s.slice(at + 1);
    const stop = rest.search(/[\/'"`:,;()]/);
    const segment = stop < 0 ? rest : rest.slice(0, stop);
    // The longest white-space-bounded prefix of the segment that exists; else up to the first white space.
    let take = segment.search(/\s/) < 0 ? segment : segment.slice(0, segment.search(/\s/));
    for (let cut = segment.length; cut > take.length; cut = segment.slice(0, cut).search(/\s+\S*$/)) {
      const candidate = segment.slice(0, cut).trimEnd();
      if (candidate.length > take.length && fs.existsSync(path.join(dir, candidate))) { take = candidate; break; }
      if (cut <= 0) break;
    }
    if (!take) break;
    at += 1 + take.length;
    dir = path.join(dir, take);
    if (take !== segment) break; // white space ended the path
  }
  return at;
}

/**
 * How the run folder names input files (pool inputs, labelled datasets, the key file, the cache): relative to the run
 * folder, so config.json replays from there and no absolute path is written; with data.hashPaths, as keyed hashes.
 */
export function runPaths(config: Config, out: string) {
  const files = [...config.data.inputs, ...config.evaluate.datasets.map((d) => d.file)];
  const names = new SourceNames(files, privacyKeyring({ keyFile: config.data.privacyKeyFile }), config.data.hashPaths);
  const abs = (p: string) => path.resolve(p);
  const file = (p: string) => (config.data.hashPaths ? names.file(p) : path.relative(path.resolve(out), abs(p)) || '.');
  const roots = [...new Set([...files, config.data.privacyKeyFile, config.cache.path].filter((p): p is string => !!p).map(abs))].sort((a, b) => b.length - a.length);
  return {
    file,
    hashed: (name: string) => (config.data.hashPaths ? names.component(name) : name),
    /** Free text (the command line) with every known path named as above. */
    text: (s: string) => roots.reduce((t, r) => t.split(r).join(file(r)), config.data.hashPaths ? names.text(s) : s),
    config: (c: Config): Config => ({
      ...c,
      data: { ...c.data, inputs: c.data.inputs.map(file), privacyKeyFile: c.data.privacyKeyFile ? file(c.data.privacyKeyFile) : null },
      cache: { ...c.cache, path: c.cache.path ? file(c.cache.path) : null },
      evaluate: { ...c.evaluate, datasets: c.evaluate.datasets.map((d) => ({ ...d, file: file(d.file) })) },
    }),
  };
}
