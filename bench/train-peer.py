# The PyTorch peer of `npm run bench -- train`: one SwAV training step of the same model on the same crops, written
# as a PyTorch user would (nn.Module, autograd, a plain torch.optim LARS), on the CPU, so the two trainers can be
# compared on the same machine under the same load. Both sides read their sizes from bench/train-sizes.json (medssl
# config objects, see its `about`).
#
# Setup: torch 2.13.0, CPU build. Where the index offers only the CPU wheel for 2.13.0 the plain pin gets it; where
# it offers both, pin `torch==2.13.0+cpu` (the default Linux wheel pulls in the CUDA runtime packages):
#   python3 -m venv .peer && .peer/bin/pip install torch==2.13.0 numpy
#   .peer/bin/python bench/train-peer.py --check                # correctness checks (see run_checks)
#   .peer/bin/python bench/train-peer.py --once 64px --steps 4  # a human run: both memory formats
#
# Worker protocol (what medssl's bench spawns, alternating rounds with its own trainer):
#   stdout, once after import:  {"ready": true, "torch": "2.13.0+cpu", "threads": 2}
#   stdin, one JSON per line:   {"size": "64px", "steps": 4, "format": "nchw"}
#       format: "nchw" | "channels_last"; optional "padding": "symmetric" (default) | "tf" (see 'SAME' below);
#       optional "threads": n (default: the worker's --threads, itself os.cpu_count() by default)
#   stdout, one line per command, medssl's bench format:
#     {"name": "train-peer/64px/nchw", "unit": "images/s", "value": ..., "config": {...}}
#   or {"error": "...", "command": ...} for a command it cannot run. EOF on stdin ends the worker.
# The model, optimizer and input batches are built once per (size, format, padding) and cached; the first command
# for one also runs one untimed warm-up step. Threads: PyTorch's OpenMP (libgomp) workers spin while idle unless
# OMP_WAIT_POLICY=PASSIVE is in the worker's environment; on the 2-core machine shared with other jobs, PASSIVE
# gave up to 2-3x the images/s (none on a quiet machine), so config.ompWaitPolicy records which one ran.
# config.peakRssMB is the worker's peak so far (getrusage maxrss): it covers every size run before in the same
# worker. Everything but these JSON lines goes to stderr.
#
# What one step does, as stages/train/trainer.ts does it:
#   - crops of the same resolution are stacked and encoded together (each resolution has its own BN statistics);
#   - the projection head (linear without bias, BN, ReLU, linear with bias, L2 normalisation) sees all crops at once;
#   - scores against unit-norm prototypes; Sinkhorn-Knopp in the log domain on the assigned crops, without gradient;
#   - the swapped-prediction loss, backward, LARS, prototypes renormalised, BN moving averages updated;
#   - the step's metrics (loss, code entropy, prototype usage) read back to the host as one small vector.
# With padding "tf" and medssl's initial weights copied in, two steps of this code were compared with medssl's
# Trainer on small configs (both stems, even and odd crop sizes, both memory formats): losses agreed to 1e-6 and
# every parameter and moving statistic to 7e-6 relative (float32 round-off).
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES_FILE = os.path.join(HERE, 'train-sizes.json')
VECTORS_FILE = os.path.join(HERE, '..', '..', 'shared', 'vectors', 'swav_vectors.json')

# stages/train/batchnorm.ts: epsilon 1e-5, moving statistics keep 90% per step (PyTorch's momentum 0.1). Both
# sides fold the unbiased batch variance into the moving variance.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- TensorFlow 'SAME' padding
#
# medssl's convolutions and its max pool use TensorFlow's padding 'same': output ceil(n / s), total padding
# max((ceil(n / s) - 1) * s + k - n, 0), of which the smaller half goes before (left = total // 2) and the rest
# after. PyTorch pads symmetrically (k // 2 each side). Same output shape and the same FLOPs either way, but where
# TF's total is odd the windows differ: a 3x3/2 conv on an even input is padded (0, 1) by TF and (1, 1) by
# PyTorch, a 7x7/2 stem on an even input (2, 3) against (3, 3). padding='tf' reproduces TF's windows exactly (--check
# verifies it against a direct computation) at the price of an F.pad copy before each such conv: in the profiler
# about 5% of a 64 px step's CPU time and 1% at 128 px (end to end, within a shared machine's noise). Measurable, so
# the bench default is 'symmetric', the plain PyTorch model: the same output shapes, hence exactly the same FLOPs,
# with windows shifted by one pixel at those convs. The 3x3/2 max pool needs no copy for TF's windows (ceil_mode,
# below), so it follows the padding setting like the convs.

def tf_same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d without bias whose padding is TensorFlow's 'same' ('tf') or PyTorch's symmetric k // 2."""

    def __init__(self, in_c, out_c, k, stride, padding_mode):
        super().__init__(in_c, out_c, k, stride=stride, padding=0, bias=False)
        self.k, self.s, self.mode = k, stride, padding_mode

    def forward(self, x):
        if self.mode == 'symmetric':
            return F.conv2d(x, self.weight, None, self.s, self.k // 2)
        (top, bottom), (left, right) = tf_same_pads(x.shape[2], self.k, self.s), tf_same_pads(x.shape[3], self.k, self.s)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, None, self.s, (top, left))
        # Asymmetric: TF puts the extra row/column after. Pad the symmetric part in the conv, the extra one by F.pad.
        x = F.pad(x, (0, right - left, 0, bottom - top))
        return F.conv2d(x, self.weight, None, self.s, (top, left))


def max_pool_3x3_2(x, padding_mode):
    """TF's 3x3/2 max pool with padding 'same'. For an even input TF pads (0, 1): exactly what ceil_mode does
    with no padding (the last window runs one past the edge and ignores it), so no copy is needed; for an odd
    input TF pads (1, 1), PyTorch's padding=1."""
    if padding_mode == 'symmetric':
        return F.max_pool2d(x, 3, 2, 1)
    h, w = x.shape[2], x.shape[3]
    if h % 2 == 0 and w % 2 == 0:
        return F.max_pool2d(x, 3, 2, 0, ceil_mode=True)
    if h % 2 == 1 and w % 2 == 1:
        return F.max_pool2d(x, 3, 2, 1)
    (top, bottom), (left, right) = tf_same_pads(h, 3, 2), tf_same_pads(w, 3, 2)
    return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float('-inf')), 3, 2, 0)


# ---------------------------------------------------------------- the model (stages/train/resnet.ts, heads.ts)

def encoder_spec(model):
    """resnet.ts encoderSpec: resnet18 and resnet50 have their published shapes; `resnet` takes width and depth."""
    arch = model.get('arch', 'resnet')
    block = 'bottleneck' if arch == 'resnet50' else 'basic'
    width = model.get('width', 16) if arch == 'resnet' else 64
    depth = {'resnet18': [2, 2, 2, 2], 'resnet50': [3, 4, 6, 3]}.get(arch, model.get('depth', [1, 1, 1, 1]))
    stem = model.get('stem') or ('small' if arch == 'resnet' else 'imagenet')
    expansion = 4 if block == 'bottleneck' else 1
    return {'block': block, 'width': width, 'depth': depth, 'stem': stem,
            'feature_dim': width * 2 ** (len(depth) - 1) * expansion}


class ConvBN(nn.Module):
    """Convolution (no bias) then batch norm: one unit of resnet.ts."""

    def __init__(self, in_c, out_c, k, stride, padding_mode):
        super().__init__()
        self.conv = SameConv2d(in_c, out_c, k, stride, padding_mode)
        self.bn = nn.BatchNorm2d(out_c, eps=BN_EPSILON, momentum=BN_MOMENTUM)

    def forward(self, x):
        return self.bn(self.conv(x))


class Block(nn.Module):
    """Basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 to 4w) block; the stride sits on the first 3x3 (as in
    resnet.ts and torchvision); a 1x1 conv + BN shortcut where the shape changes."""

    def __init__(self, kind, in_c, w, stride, padding_mode):
        super().__init__()
        if kind == 'basic':
            shapes = [(in_c, w, 3, stride), (w, w, 3, 1)]
        else:
            shapes = [(in_c, w, 1, 1), (w, w, 3, stride), (w, 4 * w, 1, 1)]
        self.units = nn.ModuleList(ConvBN(i, o, k, s, padding_mode) for i, o, k, s in shapes)
        out_c = shapes[-1][1]
        self.shortcut = ConvBN(in_c, out_c, 1, stride, padding_mode) if stride != 1 or in_c != out_c else None
        self.out_c = out_c

    def forward(self, x):
        y = x
        for i, u in enumerate(self.units):
            y = u(y)
            if i < len(self.units) - 1:
                y = F.relu(y)
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class Encoder(nn.Module):
    """Stem (3x3/1, or 7x7/2 + 3x3/2 max pool), four stages, global average pooling: [N, C, H, W] -> [N, D]."""

    def __init__(self, spec, channels, padding_mode):
        super().__init__()
        self.padding_mode = padding_mode
        self.imagenet = spec['stem'] == 'imagenet'
        self.stem = ConvBN(channels, spec['width'], 7 if self.imagenet else 3, 2 if self.imagenet else 1, padding_mode)
        blocks, in_c = [], spec['width']
        for s, n in enumerate(spec['depth']):
            for b in range(n):
                blk = Block(spec['block'], in_c, spec['width'] * 2 ** s, 2 if b == 0 and s > 0 else 1, padding_mode)
                blocks.append(blk)
                in_c = blk.out_c
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        h = F.relu(self.stem(x))
        if self.imagenet:
            h = max_pool_3x3_2(h, self.padding_mode)
        return self.blocks(h).mean((2, 3))


class ProjectionHead(nn.Module):
    """Linear (no bias), BN, ReLU, linear (with bias), L2 normalisation (heads.ts project)."""

    def __init__(self, feature_dim, hidden, out):
        super().__init__()
        self.fc1 = nn.Linear(feature_dim, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, f):
        return F.normalize(self.fc2(F.relu(self.bn(self.fc1(f)))), dim=1)


class SwAV(nn.Module):
    def __init__(self, model_cfg, channels, padding_mode='symmetric'):
        super().__init__()
        self.spec = encoder_spec(model_cfg)
        proj = model_cfg.get('projection', {})
        hidden, out = proj.get('hidden', 256), proj.get('out', 64)
        self.encoder = Encoder(self.spec, channels, padding_mode)
        self.head = ProjectionHead(self.spec['feature_dim'], hidden, out)
        # SwAV's idiom: prototypes as a bias-free linear layer, weight [K, D] (medssl stores C = weight^T, [D, K]).
        self.prototypes = nn.Linear(out, model_cfg.get('prototypes', 64), bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """params.ts: convs He normal with std sqrt(2 / fan_out), fan_out = k * k * out_channels; linear kernels
        and biases uniform(+-1/sqrt(fan_in)); BN gamma 1, beta 0, moving mean 0, moving variance 1."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.reset_parameters()
        self.normalize_prototypes()

    @torch.no_grad()
    def normalize_prototypes(self):
        """SwAV keeps the prototypes on the unit sphere by renormalising them after every update."""
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def forward(self, crops_by_resolution):
        """Scores [V * B, K] (z . c, before temperature) of the crops, in view order. `crops_by_resolution` is one
        [n * B, C, S, S] tensor per crop size, in view order (the globals, then the locals)."""
        feats = torch.cat([self.encoder(x) for x in crops_by_resolution])
        return self.prototypes(self.head(feats))


def no_decay(model):
    """params.ts `decays`: batch-norm gamma/beta and biases get neither weight decay nor the LARS trust ratio."""
    skip = set()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            skip.update(id(p) for p in m.parameters(recurse=False))
        elif getattr(m, 'bias', None) is not None and isinstance(m.bias, nn.Parameter):
            skip.add(id(m.bias))
    return skip


# ---------------------------------------------------------------- LARS (stages/train/optimizers.ts)

class LARS(torch.optim.Optimizer):
    """SGD with momentum and LARS's layer-wise trust ratio, as medssl's optimizers.ts computes it:
        d = g + wd w;  d *= eta ||w|| / (||g|| + wd ||w||)  (1 where either norm is 0; only where `lars`);
        m = momentum m + d;  w -= lr m.
    Groups with lars=False (BN parameters, biases) get plain momentum SGD without decay."""

    def __init__(self, params, lr, momentum, weight_decay, eta):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, mom, wd, eta = group['lr'], group['momentum'], group['weight_decay'], group['eta']
            for p in group['params']:
                if p.grad is None:
                    continue
                g = p.grad
                d = g.add(p, alpha=wd) if wd > 0 else g
                if group['lars']:
                    wn, gn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    ratio = torch.where((wn > 0) & (gn > 0), eta * wn / (gn + wd * wn + 1e-12), torch.ones_like(wn))
                    d = d * ratio
                if mom > 0:
                    state = self.state[p]
                    if 'momentum' not in state:
                        state['momentum'] = torch.zeros_like(p)
                    d = state['momentum'].mul_(mom).add_(d)
                p.add_(d, alpha=-lr)


def make_optimizer(model, o):
    name = o.get('name', 'lars')
    if name not in ('lars', 'sgd'):
        raise ValueError(f'optimizer {name!r}: the peer implements lars and sgd only')
    skip = no_decay(model)
    decayed = [p for p in model.parameters() if id(p) not in skip]
    plain = [p for p in model.parameters() if id(p) in skip]
    opt = LARS([{'params': decayed}, {'params': plain, 'weight_decay': 0.0, 'lars': False}],
               lr=o.get('lr', 0.3), momentum=o.get('momentum', 0.9), weight_decay=o.get('weightDecay', 1e-6),
               eta=o.get('larsEta', 0.001))
    if name == 'sgd':
        for g in opt.param_groups:
            g['lars'] = False
    return opt


# ---------------------------------------------------------------- Sinkhorn-Knopp and the swapped loss

@torch.no_grad()
def sinkhorn_knopp(scores, epsilon, iterations):
    """sinkhorn.ts: codes [B, K] (rows sum to 1) of scores [B, K], in the log domain (no overflow for small eps)."""
    b, k = scores.shape
    log_b, log_k = math.log(b), math.log(k)
    log_q = scores / epsilon
    log_q = log_q - torch.logsumexp(log_q.flatten(), 0)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True) - log_k  # each prototype gets 1/K of the mass
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True) - log_b  # each sample holds 1/B of it
    return torch.exp(log_q + log_b)


def assigned_codes(scores, queue_scores, epsilon, iterations):
    """swav-loss.ts assignedCodes: the queue's scores (if any) are prepended for the equipartition, then dropped."""
    b = scores.shape[0]
    s = scores.detach() if queue_scores is None else torch.cat([queue_scores.detach(), scores.detach()])
    return sinkhorn_knopp(s, epsilon, iterations)[-b:]


def swav_loss(crop_scores, temperature, epsilon, iterations, crops_for_assign, queue_scores=None):
    """swav-loss.ts: mean over assigned crops a of the mean over other crops v of -1/B sum q_a log softmax(s_v / T)."""
    v = len(crop_scores)
    log_p = [F.log_softmax(s / temperature, dim=1) for s in crop_scores]
    total = 0
    for i, a in enumerate(crops_for_assign):
        q = assigned_codes(crop_scores[a], None if queue_scores is None else queue_scores[i], epsilon, iterations)
        sub = sum(-(q * log_p[w]).sum(1).mean() for w in range(v) if w != a)
        total = total + sub / (v - 1)
    return total / len(crops_for_assign)


@torch.no_grad()
def code_metrics(assigned, k, epsilon, iterations):
    """trainer.ts codeMetrics (one multi-modal group): mean code entropy (nats) over the assigned crops, recomputed
    from their scores as medssl does, and the fraction of prototypes that are some assigned crop's best match."""
    entropy = 0
    for s in assigned:
        q = sinkhorn_knopp(s, epsilon, iterations)
        entropy = entropy - (q * torch.log(q.clamp_min(1e-30))).sum(1).mean() / len(assigned)
    winners = torch.cat(assigned).argmax(1)
    used = torch.zeros(k, dtype=torch.bool).index_fill_(0, winners, True).sum().float()
    return entropy, used / min(k, len(assigned) * assigned[0].shape[0])


# ---------------------------------------------------------------- one training step

class Run:
    """One bench size in one memory format: the model, its optimizer and a fixed batch of random crops."""

    def __init__(self, cfg, fmt, padding_mode='symmetric'):
        t, aug = cfg.get('train', {}), cfg['augment']
        if t.get('objective', 'swav') != 'swav' or t.get('clustering', 'multi-modal') != 'multi-modal' \
                or t.get('queue', {}).get('length', 0) != 0 or t.get('freezePrototypesSteps', 0) != 0:
            raise ValueError('the peer runs the swav objective, multi-modal, without queue or frozen prototypes')
        o = t.get('optimizer', {})
        if o.get('warmupSteps', 0) != 0 or o.get('minLr', o.get('lr')) != o.get('lr', 0.3):
            raise ValueError('the peer runs a constant learning rate (minLr = lr, warmupSteps 0)')
        self.fmt = torch.channels_last if fmt == 'channels_last' else torch.contiguous_format
        self.batch = t.get('batchSize', 64)
        self.temperature, self.epsilon = t.get('temperature', 0.1), t.get('epsilon', 0.05)
        self.iterations, self.assign = t.get('sinkhornIterations', 3), t.get('cropsForAssign', [0, 1])
        channels = cfg.get('normalize', {}).get('channels', 1)
        torch.manual_seed(cfg.get('seed', 0))
        self.model = SwAV(cfg['model'], channels, padding_mode).to(memory_format=self.fmt)
        self.model.train()
        self.k = self.model.prototypes.out_features
        self.optimizer = make_optimizer(self.model, o)
        # Globals first, then locals: view order, one tensor per resolution (trainer.ts stackByResolution).
        self.views = [aug['global']['size']] * aug['global']['count'] + [aug['local']['size']] * aug['local']['count']
        self.crops_label = f"{aug['global']['count']}x{aug['global']['size']} + {aug['local']['count']}x{aug['local']['size']}"
        gen = torch.Generator().manual_seed(cfg.get('seed', 0))
        self.inputs = []
        for size in dict.fromkeys(self.views):
            n = self.views.count(size)
            x = torch.randn(n * self.batch, channels, size, size, generator=gen)
            self.inputs.append(x.contiguous(memory_format=self.fmt))
        self.params = sum(p.numel() for p in self.model.parameters())
        self.warmed = False

    def step(self):
        """One optimizer step; returns [loss, ssl loss, code entropy, prototype usage] read back to the host."""
        b = self.batch
        self.optimizer.zero_grad(set_to_none=True)
        scores = self.model(self.inputs)
        crop_scores = list(scores.split(b))
        loss = swav_loss(crop_scores, self.temperature, self.epsilon, self.iterations, self.assign)
        loss.backward()
        self.optimizer.step()
        self.model.normalize_prototypes()
        # BN moving averages were updated by the forward (PyTorch's BatchNorm in train mode), as medssl updates
        # them after the step: the same arithmetic on the same batch statistics.
        entropy, usage = code_metrics([crop_scores[a].detach() for a in self.assign], self.k, self.epsilon, self.iterations)
        ssl = loss.detach()
        return torch.stack([ssl, ssl, entropy, usage]).tolist()  # the one host sync of the step


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def measure(run, size, fmt, steps, threads, padding_mode):
    if not run.warmed:
        run.step()  # untimed: oneDNN primitive creation, allocator growth
        run.warmed = True
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        metrics = run.step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    images = run.batch * steps
    return {
        'name': f'train-peer/{size}/{fmt}', 'unit': 'images/s', 'value': images / wall,
        'config': {
            'torch': torch.__version__, 'threads': threads, 'steps': steps, 'batch': run.batch, 'crops': run.crops_label,
            'params': run.params, 'cpuSecondsPerImage': cpu / images, 'peakRssMB': round(peak_rss_mb(), 1),
            'loss': metrics[0], 'codeEntropy': metrics[2], 'prototypeUsage': metrics[3],
            'secondsPerStep': wall / steps, 'memoryFormat': fmt, 'padding': padding_mode,
            'load': os.getloadavg()[0], 'loadavg': [round(x, 2) for x in os.getloadavg()],
            # libgomp's idle threads spin unless told otherwise: on a shared machine that decides the figure.
            'ompWaitPolicy': os.environ.get('OMP_WAIT_POLICY', 'default'),
        },
    }


def load_sizes(path):
    with open(path) as f:
        return json.load(f)['sizes']


class Worker:
    def __init__(self, sizes, threads):
        self.sizes, self.threads, self.runs = sizes, threads, {}

    def handle(self, cmd):
        size, fmt = cmd.get('size'), cmd.get('format', 'nchw')
        steps, padding_mode = cmd.get('steps', 4), cmd.get('padding', 'symmetric')
        threads = cmd.get('threads', self.threads)
        if size not in self.sizes:
            raise ValueError(f'unknown size {size!r} (have {", ".join(self.sizes)})')
        if fmt not in ('nchw', 'channels_last'):
            raise ValueError(f'format {fmt!r}: expected "nchw" or "channels_last"')
        if padding_mode not in ('tf', 'symmetric'):
            raise ValueError(f'padding {padding_mode!r}: expected "tf" or "symmetric"')
        if not (isinstance(steps, int) and steps > 0):
            raise ValueError(f'steps {steps!r}: expected a positive integer')
        if not (isinstance(threads, int) and threads > 0):
            raise ValueError(f'threads {threads!r}: expected a positive integer')
        torch.set_num_threads(threads)  # per command, so a caller can compare thread counts in one worker
        key = (size, fmt, padding_mode)
        if key not in self.runs:
            log(f'building {size} {fmt} ({padding_mode} padding)')
            self.runs[key] = Run(self.sizes[size], fmt, padding_mode)
        return measure(self.runs[key], size, fmt, steps, threads, padding_mode)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


# ---------------------------------------------------------------- --check

def run_checks():
    passed, failed = 0, 0

    def check(ok, what):
        nonlocal passed, failed
        passed, failed = passed + bool(ok), failed + (not ok)
        log(f"{'ok  ' if ok else 'FAIL'} {what}")

    # 1. Sinkhorn codes and the swapped loss against the float64 reference vectors.
    if not os.path.exists(VECTORS_FILE):
        log('skip: the SwAV reference vectors (shared/vectors/swav_vectors.json) are not beside this checkout')
    else:
        with open(VECTORS_FILE) as f:
            cases = json.load(f)['cases']
        for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
            worst_code, worst_loss, worst_row = 0.0, 0.0, 0.0
            for c in cases:
                crops = [torch.tensor(s, dtype=dtype) for s in c['cropScores']]
                queue = [torch.tensor(s, dtype=dtype) for s in c['queueScores']] if c['queueScores'] else None
                codes = sinkhorn_knopp(crops[0], c['epsilon'], c['iterations']).double().numpy()
                want = np.array(c['sinkhornOfCrop0'])
                # Relative to each row's largest code (tiny codes carry no weight), as medssl's test measures it.
                worst_code = max(worst_code, float((np.abs(codes - want) / np.abs(want).max(1, keepdims=True)).max()))
                worst_row = max(worst_row, float(np.abs(codes.sum(1) - 1).max()))
                loss = float(swav_loss(crops, c['temperature'], c['epsilon'], c['iterations'], c['cropsForAssign'], queue))
                worst_loss = max(worst_loss, abs(loss - c['loss']) / abs(c['loss']))
            name = str(dtype).replace('torch.', '')
            check(worst_code < tol, f'{len(cases)} cases, {name}: Sinkhorn codes match the reference (worst {worst_code:.1e} of the row maximum, tolerance {tol:g})')
            check(worst_row < tol, f'{len(cases)} cases, {name}: every code row sums to 1 (worst |sum - 1| {worst_row:.1e})')
            check(worst_loss < tol, f'{len(cases)} cases, {name}: swapped loss matches the reference, queue cases included (worst relative {worst_loss:.1e})')

    # 2. TF 'same' padding: the peer's conv and max pool against a direct float64 computation with TF's pads.
    def tf_conv_ref(x, w, s):
        k = w.shape[-1]
        (t, b), (l, r) = tf_same_pads(x.shape[2], k, s), tf_same_pads(x.shape[3], k, s)
        xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
        oh, ow = -(-x.shape[2] // s), -(-x.shape[3] // s)
        out = np.zeros((x.shape[0], w.shape[0], oh, ow))
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, :, i * s:i * s + k, j * s:j * s + k]
                out[:, :, i, j] = np.einsum('ncij,ocij->no', patch, w)
        return out

    def tf_pool_ref(x):
        (t, b), (l, r) = tf_same_pads(x.shape[2], 3, 2), tf_same_pads(x.shape[3], 3, 2)
        xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-np.inf)
        oh, ow = -(-x.shape[2] // 2), -(-x.shape[3] // 2)
        return np.array([[[[xp[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(ow)] for i in range(oh)]
                          for c in range(x.shape[1])] for n in range(x.shape[0])])

    g = torch.Generator().manual_seed(1)
    for n, k, s in ((8, 3, 2), (8, 7, 2), (7, 3, 2), (7, 7, 2), (8, 1, 2), (7, 1, 2), (8, 3, 1)):
        conv = SameConv2d(2, 3, k, s, 'tf').double()
        x = torch.randn(2, 2, n, n, generator=g, dtype=torch.float64)
        got = conv(x).detach().numpy()
        want = tf_conv_ref(x.numpy(), conv.weight.detach().numpy(), s)
        sym = SameConv2d(2, 3, k, s, 'symmetric').double()
        sym.weight.data.copy_(conv.weight.data)
        differs = not np.allclose(sym(x).detach().numpy(), want)
        check(got.shape == want.shape and np.allclose(got, want, atol=1e-12),
              f"conv {k}x{k}/{s} on {n}x{n}: TF 'same' windows reproduced (symmetric padding {'differs' if differs else 'agrees'})")
    for n in (8, 7):
        x = torch.randn(2, 3, n, n, generator=g, dtype=torch.float64)
        got, want = max_pool_3x3_2(x, 'tf').numpy(), tf_pool_ref(x.numpy())
        check(got.shape == want.shape and np.allclose(got, want), f"max pool 3x3/2 on {n}x{n}: TF 'same' windows reproduced")

    # 3. LARS: one update against the formula of optimizers.ts, by hand.
    w0 = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)
    g0 = torch.tensor([[0.1, 0.3], [-0.2, 0.05]], dtype=torch.float64)
    p = nn.Parameter(w0.clone())
    p.grad = g0.clone()
    opt = LARS([p], lr=0.3, momentum=0.9, weight_decay=1e-6, eta=0.001)
    opt.step()
    wn, gn = w0.norm().item(), g0.norm().item()
    want = w0 - 0.3 * (g0 + 1e-6 * w0) * (0.001 * wn / (gn + 1e-6 * wn + 1e-12))
    check(torch.allclose(p.detach(), want, rtol=0, atol=1e-15), 'LARS: one update equals w - lr (g + wd w) eta ||w|| / (||g|| + wd ||w||)')

    # 4. One step on tiny models (both stems, both memory formats) changes every parameter and every moving average.
    tiny = {
        'seed': 0, 'normalize': {'channels': 1},
        'train': {'batchSize': 8, 'optimizer': {'name': 'lars', 'lr': 0.3, 'minLr': 0.3}},
    }
    for stem, g_size, l_size in (('small', 16, 8), ('imagenet', 32, 16)):
        for fmt, padding_mode in (('nchw', 'symmetric'), ('channels_last', 'symmetric'), ('nchw', 'tf'), ('channels_last', 'tf')):
            cfg = dict(tiny, model={'arch': 'resnet', 'width': 4, 'depth': [1, 1], 'stem': stem,
                                    'projection': {'hidden': 16, 'out': 8}, 'prototypes': 10},
                       augment={'global': {'count': 2, 'size': g_size}, 'local': {'count': 2, 'size': l_size}})
            run = Run(cfg, fmt, padding_mode)
            before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
            stats = {n: b.detach().clone() for n, b in run.model.named_buffers() if 'running' in n}
            metrics = run.step()
            unchanged = [n for n, p in run.model.named_parameters() if torch.equal(p.detach(), before[n])]
            stale = [n for n, b in run.model.named_buffers() if 'running' in n and torch.equal(b, stats[n])]
            norms = run.model.prototypes.weight.norm(dim=1)
            what = f'{stem} stem, {fmt}, {padding_mode} padding: one step'
            check(not unchanged, f'{what} changes all {len(before)} parameter tensors' + (f' (unchanged: {unchanged})' if unchanged else ''))
            check(not stale, f'{what} updates all {len(stats)} BN moving statistics' + (f' (stale: {stale})' if stale else ''))
            check(torch.allclose(norms, torch.ones_like(norms), atol=1e-6), f'{what} leaves unit-norm prototypes')
            check(all(math.isfinite(m) for m in metrics) and 0 <= metrics[2] <= math.log(10) and 0 < metrics[3] <= 1,
                  f'{what}: finite loss {metrics[0]:.4f}, code entropy {metrics[2]:.4f} within [0, ln K], usage {metrics[3]:.2f} in (0, 1]')

    # 5. The bench sizes build with medssl's parameter counts (Trainer store.count of non-moving parameters).
    medssl_params = {'64px': 361072, '128px': 12523584, '224px': 12869184}
    for size, cfg in load_sizes(SIZES_FILE).items():
        model = SwAV(cfg['model'], cfg.get('normalize', {}).get('channels', 1))
        n = sum(p.numel() for p in model.parameters())
        if size in medssl_params:
            check(n == medssl_params[size], f'{size}: {n} trainable parameters, as medssl counts ({medssl_params[size]})')

    log(f'{passed} passed, {failed} failed')
    return failed == 0


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description='PyTorch peer of the medssl trainer benchmark (see the header).')
    ap.add_argument('--threads', type=int, default=os.cpu_count(), help='torch intra-op threads (default: all cores)')
    ap.add_argument('--sizes', default=SIZES_FILE, help='sizes file (default: bench/train-sizes.json)')
    ap.add_argument('--check', action='store_true', help='run the correctness checks and exit')
    ap.add_argument('--once', metavar='SIZE', help='measure one size and exit (no stdin protocol)')
    ap.add_argument('--steps', type=int, default=4, help='timed steps for --once')
    ap.add_argument('--format', default='both', choices=['nchw', 'channels_last', 'both'], help='memory format for --once')
    ap.add_argument('--padding', default='symmetric', choices=['tf', 'symmetric'],
                    help="'symmetric' (default): PyTorch's k // 2, same FLOPs; 'tf': TensorFlow's SAME windows exactly")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.check:
        sys.exit(0 if run_checks() else 1)

    worker = Worker(load_sizes(args.sizes), torch.get_num_threads())
    if args.once:
        for fmt in (['nchw', 'channels_last'] if args.format == 'both' else [args.format]):
            r = worker.handle({'size': args.once, 'steps': args.steps, 'format': fmt, 'padding': args.padding})
            emit(r)
            log(f"{r['name']}: {r['value']:.1f} images/s, {r['config']['secondsPerStep']:.2f} s/step, "
                f"peak RSS {r['config']['peakRssMB']:.0f} MB, loss {r['config']['loss']:.4f}, load {r['config']['load']:.2f}")
        return

    emit({'ready': True, 'torch': torch.__version__, 'threads': torch.get_num_threads()})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError('expected a JSON object')
            emit(worker.handle(cmd))
        except Exception as e:  # one bad command must not hang the caller waiting for its line
            log(f'error: {e!r}')
            emit({'error': str(e), 'command': line.strip()})


if __name__ == '__main__':
    main()
