// `npm run gpu-check`: for anyone with a GPU, does medssl really compute on it?
//
// Prints, as JSON lines: the backend and the device TensorFlow places this process's ops on (asked of the binding,
// not of nvidia-smi), the driver's view of the GPUs (nvidia-smi, when present, for comparison only), a float32 matmul
// rate, and one SwAV step at 224 px with ResNet-50 (2 x 224 + 6 x 96 crops, batch 32, K = 3000) with its time.
// Written from the TensorFlow and tfjs-node documentation: it has not been run on a GPU (none was available).
// On a CPU-only machine it runs too, says so, and the step takes minutes: pass --no-step to skip it.
import { execFileSync } from 'node:child_process';

const say = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

const { tf, backendInfo } = await import('../pipeline/core/tensorflow.js');
let driver: string[] = [];
try {
  driver = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).split('\n').filter((l) => l.startsWith('GPU'));
} catch {
  driver = [];
}
say({ check: 'devices', backend: backendInfo.backend, device: backendInfo.device, tensorflow: backendInfo.tensorflowVersion, driverGpus: driver, notes: backendInfo.notes });
if (driver.length && backendInfo.device !== 'GPU') {
  say({ check: 'warning', message: 'the driver lists GPUs but TensorFlow places ops on the CPU: see `medssl info` notes and README "GPU"' });
}

// Matmul rate: 2 n^3 flops per product, timed after a warm-up, read back once.
const n = 2048;
const a = tf.randomNormal([n, n]), b = tf.randomNormal([n, n]);
tf.matMul(a, b).dataSync();
const reps = backendInfo.device === 'GPU' ? 50 : 5;
const t0 = performance.now();
let c = tf.matMul(a, b);
for (let i = 1; i < reps; i++) {
  const next = tf.matMul(c, b);
  c.dispose();
  c = next;
}
c.dataSync();
const seconds = (performance.now() - t0) / 1000;
say({ check: 'matmul', n, reps, gflops: (2 * n ** 3 * reps) / seconds / 1e9 });
tf.dispose([a, b, c]);

if (!process.argv.includes('--no-step')) {
  const { parseConfig } = await import('../schemas/config.js');
  const { Trainer } = await import('../stages/train/trainer.js');
  const { random } = await import('../pipeline/core/random.js');
  const batch = 32;
  const config = parseConfig({
    augment: { global: { count: 2, size: 224 }, local: { count: 6, size: 96 } },
    model: { arch: 'resnet50', projection: { hidden: 2048, out: 128 }, prototypes: 3000 },
    train: { batchSize: batch, optimizer: { name: 'lars', warmupSteps: 0 } },
  });
  const views = [...Array(2).fill(224), ...Array(6).fill(96)].map((size: number, v) => {
    const rng = random(0).stream({ crop: v, purpose: 'gpu-check' });
    const data = new Float32Array(batch * size * size);
    for (let i = 0; i < data.length; i++) data[i] = rng.normal();
    return { kind: (v < 2 ? 'global' : 'local') as 'global' | 'local', size, channels: 1, data };
  });
  const step = { epoch: 0, step: 0, ids: Array.from({ length: batch }, (_, i) => String(i)), modalities: Array(batch).fill('CT'), views, numLabels: 0 };
  const trainer = new Trainer(config, 1, 0);
  const w0 = performance.now();
  await trainer.trainStep(step, 10); // first step: kernel selection (cuDNN autotuning on a GPU)
  const warm = (performance.now() - w0) / 1000;
  const s0 = performance.now();
  const r = await trainer.trainStep(step, 10);
  const stepSeconds = (performance.now() - s0) / 1000;
  say({ check: 'swav-step', model: 'resnet50', crops: '2x224 + 6x96', batch, prototypes: 3000, firstStepSeconds: warm, stepSeconds, imagesPerSecond: batch / stepSeconds, loss: r.loss, device: backendInfo.device });
  trainer.dispose();
}
