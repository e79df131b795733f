// Collectives from MPI, for data-parallel training (stages/train/README.md, "Data-parallel training").
//
// medssl does not carry its own network code: it binds the MPI library the cluster already runs (Open MPI; the
// MPICH ABI family is bound from its documented constants) through koffi, which it already uses for libtensorflow.
// No native addon is built: libmpi is opened at run time (RTLD_GLOBAL, so that Open MPI's plug-ins find its symbols).
//
// A process is part of an MPI job when an MPI launcher started it: mpirun / mpiexec (OMPI_COMM_WORLD_SIZE,
// PMI_SIZE), srun --mpi=pmix or --mpi=pmi2 (PMIX_RANK, PMI_RANK), or MEDSSL_MPI=1. Otherwise nothing here loads and
// medssl runs in one process as it always did. MEDSSL_MPI=0 keeps a launched process out of MPI (each rank then runs
// alone: only useful for debugging). MEDSSL_MPI_LIB names the library file when it is not libmpi.so.40 / .12.
//
// Only the main JavaScript thread calls MPI (MPI_THREAD_FUNNELED). Calls block that thread, as a TensorFlow step does.
import { createRequire } from 'node:module';
import os from 'node:os';
import { MedsslError } from './failures.js';

const require = createRequire(import.meta.url);

export type ReduceOp = 'sum' | 'mean' | 'max';

/** Time and bytes spent in collectives, in all and per tag (the trainer tags its fused gradient allreduce). */
export interface CollectiveStats {
  calls: number;
  bytes: number;
  ms: number;
  byTag: Record<string, { calls: number; bytes: number; ms: number }>;
}

/** The ranks of one job and the collectives between them. Every rank must make the same calls in the same order. */
export interface Communicator {
  /** This process's rank in the job, 0..size-1. */
  readonly rank: number;
  readonly size: number;
  /** Rank among the job's processes on this machine (chooses this rank's GPU), and how many share the machine. */
  readonly localRank: number;
  readonly localSize: number;
  /** What was bound, e.g. "Open MPI v4.1.4" (the library's own version line), or "none" for one process. */
  readonly library: string;
  /** Element-wise reduction over all ranks, in place: every rank receives the result. `mean` is the sum / size. */
  allreduce<T extends Float32Array | Float64Array>(data: T, op?: ReduceOp, tag?: string): T;
  /** Rank `root`'s values to every rank, in place. */
  broadcast<T extends Float32Array | Float64Array | Int32Array | Uint8Array>(data: T, root?: number): T;
  barrier(): void;
  /** A barrier that sleeps between checks instead of spinning: for waits of seconds or hours (a rank ingesting). */
  barrierAsync(): Promise<void>;
  /** Every rank's bytes, in rank order (sizes may differ). */
  allgather(data: Uint8Array): Uint8Array[];
  /** Every rank's bytes at `root` (rank order); null on the other ranks. */
  gather(data: Uint8Array, root?: number): Uint8Array[] | null;
  readonly stats: CollectiveStats;
}

const emptyStats = (): CollectiveStats => ({ calls: 0, bytes: 0, ms: 0, byTag: {} });

function account(stats: CollectiveStats, tag: string, bytes: number, ms: number): void {
  stats.calls++;
  stats.bytes += bytes;
  stats.ms += ms;
  const t = (stats.byTag[tag] ??= { calls: 0, bytes: 0, ms: 0 });
  t.calls++;
  t.bytes += bytes;
  t.ms += ms;
}

/** One process on its own: every collective is the identity. Tests use it to run the data-parallel code at size 1. */
export class SelfCommunicator implements Communicator {
  readonly rank = 0;
  readonly size = 1;
  readonly localRank = 0;
  readonly localSize = 1;
  readonly library = 'none';
  readonly stats = emptyStats();
  allreduce<T extends Float32Array | Float64Array>(data: T, _op: ReduceOp = 'sum', tag = 'other'): T {
    account(this.stats, tag, data.byteLength, 0);
    return data;
  }
  broadcast<T extends Float32Array | Float64Array | Int32Array | Uint8Array>(data: T): T {
    return data;
  }
  barrier(): void {}
  async barrierAsync(): Promise<void> {}
  allgather(data: Uint8Array): Uint8Array[] {
    return [data.slice()];
  }
  gather(data: Uint8Array): Uint8Array[] | null {
    return [data.slice()];
  }
}

/** How this process was launched, if by an MPI launcher: its name and the job size when the environment tells it. */
export function mpiLaunch(env: NodeJS.ProcessEnv = process.env): { launcher: string; size: number | null } | null {
  if (env.MEDSSL_MPI === '0') return null;
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);
  if (env.OMPI_COMM_WORLD_SIZE) return { launcher: 'mpirun (Open MPI)', size: num(env.OMPI_COMM_WORLD_SIZE) };
  if (env.PMIX_RANK !== undefined) return { launcher: env.SLURM_JOB_ID ? 'srun --mpi=pmix' : 'a PMIx launcher', size: num(env.SLURM_STEP_NUM_TASKS ?? env.SLURM_NTASKS) };
  if (env.PMI_RANK !== undefined || env.PMI_SIZE !== undefined) return { launcher: env.SLURM_JOB_ID ? 'srun --mpi=pmi2' : 'mpiexec (PMI)', size: num(env.PMI_SIZE ?? env.SLURM_STEP_NUM_TASKS) };
  if (env.MEDSSL_MPI === '1') return { launcher: 'MEDSSL_MPI=1', size: null };
  return null;
}

interface Abi {
  name: 'openmpi' | 'mpich';
  /** koffi type of a handle (MPI_Comm, MPI_Datatype, MPI_Op, MPI_Info): a pointer in Open MPI, an int in MPICH. */
  handle: string;
  world: unknown;
  float: unknown;
  double: unknown;
  int: unknown;
  byte: unknown;
  sum: unknown;
  max: unknown;
  infoNull: unknown;
  inPlace: bigint;
  commTypeShared: number;
  statusIgnore: bigint;
}

type Fn = (...args: unknown[]) => number;

interface Bound {
  path: string;
  abi: Abi;
  f: Record<string, Fn>;
  version: string;
}

const LIBRARIES = ['libmpi.so.40', 'libmpi.so.12', 'libmpi.so'];

let bound: Bound | null = null;

/** Opens libmpi without initialising it; throws a MedsslError that says what is missing. */
function bind(env: NodeJS.ProcessEnv = process.env): Bound {
  if (bound) return bound;
  let koffi: { load(p: string, o?: object): { func(sig: string): Fn; symbol(name: string): bigint } };
  try {
    koffi = require('koffi') as typeof koffi;
  } catch (e) {
    throw new MedsslError('not-found', 'koffi', `the koffi package does not load, so MPI cannot be bound: ${(e as Error).message.split('\n')[0]}`);
  }
  const tried: string[] = [];
  const names = env.MEDSSL_MPI_LIB ? [env.MEDSSL_MPI_LIB] : LIBRARIES;
  let lib: ReturnType<typeof koffi.load> | null = null;
  let path = '';
  for (const name of names) {
    try {
      lib = koffi.load(name, { global: true });
      path = name;
      break;
    } catch (e) {
      tried.push(`${name} (${(e as Error).message.split('\n')[0].slice(0, 120)})`);
    }
  }
  if (!lib) {
    throw new MedsslError('not-found', 'libmpi', `no MPI library loads (tried ${tried.join('; ')}). Install Open MPI ` +
      '(Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev; on a cluster: module load openmpi), or set MEDSSL_MPI_LIB to the libmpi.so file');
  }
  const sym = (name: string): bigint | null => {
    try {
      return lib.symbol(name);
    } catch {
      return null;
    }
  };
  const versionFn = lib.func('int MPI_Get_library_version(void *version, _Out_ int *len)');
  const text = new Uint8Array(8192);
  const len = [0];
  versionFn(text, len);
  const version = Buffer.from(text.subarray(0, Math.max(0, Math.min(len[0], text.length)))).toString('latin1').split('\n')[0].replace(/\0.*$/, '').replace(/,.*$/, '').trim();
  let abi: Abi;
  const world = sym('ompi_mpi_comm_world');
  if (world !== null) {
    const need = (n: string) => {
      const s = sym(n);
      if (s === null) throw new MedsslError('unsupported', path, `looks like Open MPI but has no symbol ${n}`);
      return s;
    };
    abi = {
      name: 'openmpi', handle: 'void *', world, float: need('ompi_mpi_float'), double: need('ompi_mpi_double'), int: need('ompi_mpi_int'),
      byte: need('ompi_mpi_byte'), sum: need('ompi_mpi_op_sum'), max: need('ompi_mpi_op_max'), infoNull: need('ompi_mpi_info_null'),
      inPlace: 1n, commTypeShared: 0, statusIgnore: 0n,
    };
  } else if (/MPICH|Intel\(R\) MPI|MVAPICH/i.test(version)) {
    // The MPICH ABI (MPICH, Intel MPI, MVAPICH, Cray MPICH): handles are ints with fixed values (mpi.h). Written from
    // the header; not run here.
    abi = {
      name: 'mpich', handle: 'int', world: 0x44000000, float: 0x4c00040a, double: 0x4c00080b, int: 0x4c000405, byte: 0x4c00010d,
      sum: 0x58000003, max: 0x58000001, infoNull: 0x1c000000, inPlace: BigInt.asUintN(64, -1n), commTypeShared: 1, statusIgnore: 1n,
    };
  } else {
    throw new MedsslError('unsupported', path, `unknown MPI ABI ("${version}"): medssl binds Open MPI and the MPICH family`);
  }
  const H = abi.handle;
  const sigs: Record<string, string> = {
    initialized: 'int MPI_Initialized(_Out_ int *flag)',
    finalized: 'int MPI_Finalized(_Out_ int *flag)',
    initThread: 'int MPI_Init_thread(void *argc, void *argv, int required, _Out_ int *provided)',
    finalize: 'int MPI_Finalize()',
    abort: `int MPI_Abort(${H} comm, int code)`,
    commRank: `int MPI_Comm_rank(${H} comm, _Out_ int *rank)`,
    commSize: `int MPI_Comm_size(${H} comm, _Out_ int *size)`,
    splitType: `int MPI_Comm_split_type(${H} comm, int type, int key, ${H} info, void *newcomm)`,
    commFree: 'int MPI_Comm_free(void *comm)',
    allreduce: `int MPI_Allreduce(void *send, void *recv, int count, ${H} type, ${H} op, ${H} comm)`,
    bcast: `int MPI_Bcast(void *buf, int count, ${H} type, int root, ${H} comm)`,
    barrier: `int MPI_Barrier(${H} comm)`,
    ibarrier: `int MPI_Ibarrier(${H} comm, void *request)`,
    test: 'int MPI_Test(void *request, _Out_ int *flag, void *status)',
    allgather: `int MPI_Allgather(void *send, int sendcount, ${H} sendtype, void *recv, int recvcount, ${H} recvtype, ${H} comm)`,
    allgatherv: `int MPI_Allgatherv(void *send, int sendcount, ${H} sendtype, void *recv, int32_t *recvcounts, int32_t *displs, ${H} recvtype, ${H} comm)`,
    gather: `int MPI_Gather(void *send, int sendcount, ${H} sendtype, void *recv, int recvcount, ${H} recvtype, int root, ${H} comm)`,
    gatherv: `int MPI_Gatherv(void *send, int sendcount, ${H} sendtype, void *recv, int32_t *recvcounts, int32_t *displs, ${H} recvtype, int root, ${H} comm)`,
  };
  const f: Record<string, Fn> = {};
  for (const [k, sig] of Object.entries(sigs)) f[k] = lib.func(sig);
  bound = { path, abi, f, version: version || path };
  return bound;
}

/** Whether an MPI library can be bound here (without initialising it): for `medssl info` and the tests' reasons. */
export function mpiLibrary(env: NodeJS.ProcessEnv = process.env): { ok: true; library: string; path: string; abi: string } | { ok: false; reason: string } {
  try {
    const b = bind(env);
    return { ok: true, library: b.version, path: b.path, abi: b.abi.name };
  } catch (e) {
    return { ok: false, reason: e instanceof MedsslError ? e.line : (e as Error).message };
  }
}

class MpiCommunicator implements Communicator {
  readonly stats = emptyStats();
  readonly library: string;
  private finished = false;

  constructor(private readonly b: Bound, readonly rank: number, readonly size: number, readonly localRank: number, readonly localSize: number) {
    this.library = b.version;
  }

  private check(rc: number, what: string): void {
    // MPI's default error handler aborts the job before this is reached; another handler would return the code.
    if (rc !== 0) throw new MedsslError('internal', 'MPI', `${what} failed with MPI error ${rc}`);
  }

  private timed<T>(tag: string, bytes: number, fn: () => T): T {
    const t0 = performance.now();
    const r = fn();
    account(this.stats, tag, bytes, performance.now() - t0);
    return r;
  }

  allreduce<T extends Float32Array | Float64Array>(data: T, op: ReduceOp = 'sum', tag = 'other'): T {
    if (this.size === 1 || data.length === 0) return data;
    const a = this.b.abi;
    const type = data instanceof Float64Array ? a.double : a.float;
    this.timed(tag, data.byteLength, () => this.check(this.b.f.allreduce(a.inPlace, data, data.length, type, op === 'max' ? a.max : a.sum, a.world), 'MPI_Allreduce'));
    if (op === 'mean') for (let i = 0; i < data.length; i++) data[i] /= this.size;
    return data;
  }

  broadcast<T extends Float32Array | Float64Array | Int32Array | Uint8Array>(data: T, root = 0): T {
    if (this.size === 1 || data.length === 0) return data;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    // Whole bytes: the element type does not matter to a broadcast. A view with an offset is copied around the call.
    const buf = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
    this.timed('broadcast', data.byteLength, () => this.check(this.b.f.bcast(buf, buf.length, this.b.abi.byte, root, this.b.abi.world), 'MPI_Bcast'));
    if (buf !== bytes) bytes.set(buf);
    return data;
  }

  barrier(): void {
    if (this.size === 1) return;
    this.timed('barrier', 0, () => this.check(this.b.f.barrier(this.b.abi.world), 'MPI_Barrier'));
  }

  async barrierAsync(): Promise<void> {
    if (this.size === 1) return;
    const request = this.b.abi.name === 'openmpi' ? new BigUint64Array(1) : new Int32Array(1);
    this.check(this.b.f.ibarrier(this.b.abi.world, request), 'MPI_Ibarrier');
    const flag = [0];
    for (let wait = 1; ; wait = Math.min(wait * 2, 200)) {
      this.check(this.b.f.test(request, flag, this.b.abi.statusIgnore), 'MPI_Test');
      if (flag[0]) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  allgather(data: Uint8Array): Uint8Array[] {
    const a = this.b.abi;
    const counts = new Int32Array(this.size);
    this.check(this.b.f.allgather(Int32Array.of(data.length), 1, a.int, counts, 1, a.int, a.world), 'MPI_Allgather');
    const displs = new Int32Array(this.size);
    for (let r = 1; r < this.size; r++) displs[r] = displs[r - 1] + counts[r - 1];
    const total = displs[this.size - 1] + counts[this.size - 1];
    const out = new Uint8Array(Math.max(total, 1));
    this.timed('allgather', total, () => this.check(this.b.f.allgatherv(data.length ? data.slice() : new Uint8Array(1), data.length, a.byte, out, counts, displs, a.byte, a.world), 'MPI_Allgatherv'));
    return Array.from(counts, (c, r) => out.slice(displs[r], displs[r] + c));
  }

  gather(data: Uint8Array, root = 0): Uint8Array[] | null {
    const a = this.b.abi;
    const counts = new Int32Array(this.size);
    this.check(this.b.f.gather(Int32Array.of(data.length), 1, a.int, counts, 1, a.int, root, a.world), 'MPI_Gather');
    const displs = new Int32Array(this.size);
    for (let r = 1; r < this.size; r++) displs[r] = displs[r - 1] + counts[r - 1];
    const total = this.rank === root ? displs[this.size - 1] + counts[this.size - 1] : 0;
    const out = new Uint8Array(Math.max(total, 1));
    this.timed('gather', data.length, () => this.check(this.b.f.gatherv(data.length ? data.slice() : new Uint8Array(1), data.length, a.byte, out, counts, displs, a.byte, root, a.world), 'MPI_Gatherv'));
    return this.rank === root ? Array.from(counts, (c, r) => out.slice(displs[r], displs[r] + c)) : null;
  }

  /** Ends MPI: MPI_Finalize after a clean run, MPI_Abort (which stops every rank) after a failure. */
  finish(code: number): void {
    if (this.finished) return;
    this.finished = true;
    const flag = [0];
    this.b.f.finalized(flag);
    if (flag[0]) return;
    if (code !== 0 && this.size > 1) this.b.f.abort(this.b.abi.world, code);
    else this.b.f.finalize();
  }
}

let world: MpiCommunicator | null = null;

/**
 * The MPI job this process belongs to, initialised on the first call; null when no MPI launcher started it (medssl
 * then runs in one process, as always). Launched by MPI but without a usable library: a MedsslError saying what is
 * missing. At exit, MPI is finalised, or aborted (stopping every rank) when the exit code is not 0, so that one
 * failing rank never leaves the others waiting in a collective.
 */
export function openWorld(env: NodeJS.ProcessEnv = process.env): Communicator | null {
  if (world) return world;
  const launch = mpiLaunch(env);
  if (!launch) return null;
  let b: Bound;
  try {
    b = bind(env);
  } catch (e) {
    if (e instanceof MedsslError) throw new MedsslError(e.code, e.file, `started by ${launch.launcher}${launch.size ? ` as one of ${launch.size} ranks` : ''}, but ${e.message}`);
    throw e;
  }
  const provided = [0];
  const flag = [0];
  b.f.initialized(flag);
  if (!flag[0] && b.f.initThread(null, null, 1 /* MPI_THREAD_FUNNELED */, provided) !== 0) {
    throw new MedsslError('internal', b.path, 'MPI_Init_thread failed');
  }
  const rank = [0], size = [0];
  b.f.commRank(b.abi.world, rank);
  b.f.commSize(b.abi.world, size);
  // The ranks on this machine: MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), the portable way to a local rank.
  const local = b.abi.name === 'openmpi' ? new BigUint64Array(1) : new Int32Array(1);
  let localRank = 0, localSize = 1;
  if (b.f.splitType(b.abi.world, b.abi.commTypeShared, 0, b.abi.infoNull, local) === 0) {
    const handle = local[0];
    const lr = [0], ls = [0];
    b.f.commRank(handle, lr);
    b.f.commSize(handle, ls);
    localRank = lr[0];
    localSize = ls[0];
    b.f.commFree(local);
  }
  world = new MpiCommunicator(b, rank[0], size[0], localRank, localSize);
  const w = world;
  process.on('exit', (code) => w.finish(code ?? Number(process.exitCode ?? 0)));
  return world;
}

/** The job opened by openWorld, or null. */
export const currentWorld = (): Communicator | null => world;

/**
 * Before TensorFlow loads: one GPU per rank, chosen by the local rank (CUDA_VISIBLE_DEVICES, or its localRank-th
 * entry when it already lists several), and the machine's cores shared between its ranks (TensorFlow's intra- and
 * inter-op threads, unless set). Written from CUDA's and TensorFlow's documentation; the GPU part is not run here.
 */
export function placeRank(w: Communicator, env: NodeJS.ProcessEnv = process.env): string[] {
  const notes: string[] = [];
  if (w.size <= 1) return notes;
  if (env.MEDSSL_GPU_PER_RANK !== '0') {
    const listed = env.CUDA_VISIBLE_DEVICES?.split(',').map((s) => s.trim()).filter(Boolean);
    const device = listed?.length ? listed[w.localRank % listed.length] : String(w.localRank);
    if (listed && listed.length > 0 && w.localSize > listed.length) notes.push(`${w.localSize} ranks on this machine share ${listed.length} listed GPU(s)`);
    env.CUDA_VISIBLE_DEVICES = device;
  }
  const perRank = String(Math.max(1, Math.floor(os.availableParallelism() / Math.max(1, w.localSize))));
  env.TF_NUM_INTRAOP_THREADS ??= perRank;
  env.TF_NUM_INTEROP_THREADS ??= perRank;
  return notes;
}
