# The PyTorch peer of the main job's pre-training arms (SimCLR; SwAV multi-modal, uni-modal, target modality only;
# supervised; hybrid): per arm, the same model, the same initial weights, the same crops in the same order, the same objective,
# optimizer and schedule, trained by PyTorch; medssl then evaluates the encoder it exports with its own protocols,
# beside its own run of the arm (scripts/peer-compare.sh runs the whole comparison).
#
#   node dist/bench/peer-arms.js export --arm swav-multi-modal --out runs/peer   # recipe.json, crops.bin, init.bin/.json
#   .peer/bin/python bench/peer-train.py --data runs/peer/swav-multi-modal       # trains; writes peer.bin + peer.json
#   node dist/bench/peer-arms.js import --arm swav-multi-modal --out runs/peer   # -> runs/peer/encoders/swav-multi-modal
#
# The model code (ResNet, projection head, prototypes, LARS, Sinkhorn-Knopp, swapped loss) is bench/train-peer.py's,
# which was checked against medssl's trainer step by step (its header). This script adds what a whole run needs:
# loading medssl's initial parameters (names and layouts of stages/train: convs [k, k, in, out], dense [in, out],
# prototypes [D, K]), the learning-rate schedule of stages/train/schedule.ts (linear warm-up, then cosine to minLr,
# set every step), frozen prototypes for the first freezePrototypesSteps, SimCLR's NT-Xent (ntxent-loss.ts), the
# supervised term (objectives/supervised.ts, on labels.bin) alone or in the hybrid with its lambda schedule
# (objectives/hybrid.ts), and the export of every
# parameter and moving statistic in medssl's names. Padding is TensorFlow's 'same' ('tf'), so the windows are medssl's.
import argparse
import importlib.util
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location('train_peer', os.path.join(HERE, 'train-peer.py'))
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)


def medssl_names(model):
    """(medssl name, tensor, kind) for every parameter and moving statistic of peer.SwAV, in medssl's layout terms:
    kind 'conv' ([out, in, k, k] <-> [k, k, in, out]), 'dense' ([out, in] <-> [in, out]) or 'vector'."""
    out = []

    def unit(name, cb):
        out.append((f'{name}_conv/kernel', cb.conv.weight, 'conv'))
        out.append((f'{name}_bn/gamma', cb.bn.weight, 'vector'))
        out.append((f'{name}_bn/beta', cb.bn.bias, 'vector'))
        out.append((f'{name}_bn/moving_mean', cb.bn.running_mean, 'vector'))
        out.append((f'{name}_bn/moving_variance', cb.bn.running_var, 'vector'))

    enc = model.encoder
    unit('stem', enc.stem)
    i = 0
    for s, n in enumerate(model.spec['depth']):
        for b in range(n):
            blk = enc.blocks[i]
            for j, u in enumerate(blk.units):
                unit(f's{s + 1}b{b + 1}c{j + 1}', u)
            if blk.shortcut is not None:
                unit(f's{s + 1}b{b + 1}down', blk.shortcut)
            i += 1
    h = model.head
    if h is not None:  # the supervised arm has no projection head and no prototypes
        out.append(('head_fc1/kernel', h.fc1.weight, 'dense'))
        out.append(('head_bn/gamma', h.bn.weight, 'vector'))
        out.append(('head_bn/beta', h.bn.bias, 'vector'))
        out.append(('head_bn/moving_mean', h.bn.running_mean, 'vector'))
        out.append(('head_bn/moving_variance', h.bn.running_var, 'vector'))
        out.append(('head_fc2/kernel', h.fc2.weight, 'dense'))
        out.append(('head_fc2/bias', h.fc2.bias, 'vector'))
    if model.prototypes is not None:
        out.append(('prototypes/kernel', model.prototypes.weight, 'dense'))
    if getattr(model, 'classifier', None) is not None:
        out.append(('classifier/kernel', model.classifier.weight, 'dense'))
        out.append(('classifier/bias', model.classifier.bias, 'vector'))
    return out


def to_torch(a, kind):
    return a.transpose(3, 2, 0, 1) if kind == 'conv' else a.T if kind == 'dense' else a


def to_medssl(t, kind):
    a = t.detach().cpu().numpy()
    return a.transpose(2, 3, 1, 0) if kind == 'conv' else a.T if kind == 'dense' else a


def load_params(model, prefix):
    manifest = json.load(open(prefix + '.json'))
    raw = open(prefix + '.bin', 'rb').read()
    by_name = {p['name']: p for p in manifest['params']}
    with torch.no_grad():
        for name, t, kind in medssl_names(model):
            if name not in by_name and name == 'prototypes/kernel':
                continue  # SimCLR has no prototypes: they stay unused
            p = by_name[name]
            n = int(np.prod(p['shape']))
            a = np.frombuffer(raw, dtype='<f4', count=n, offset=p['offset']).reshape(p['shape'])
            t.copy_(torch.from_numpy(np.array(to_torch(a, kind))))  # a writable copy, as from_numpy wants


def save_params(model, prefix):
    entries, chunks, offset = [], [], 0
    for name, t, kind in medssl_names(model):
        a = np.ascontiguousarray(to_medssl(t, kind), dtype='<f4')
        entries.append({'name': name, 'shape': list(a.shape), 'offset': offset})
        chunks.append(a.tobytes())
        offset += a.nbytes
    open(prefix + '.bin', 'wb').write(b''.join(chunks))
    json.dump({'params': entries}, open(prefix + '.json', 'w'), indent=1)


def nt_xent(z1, z2, temperature):
    """ntxent-loss.ts: NT-Xent over 2N unit embeddings; each row's positive is its other view, the self-pair masked."""
    n = z1.shape[0]
    z = torch.cat([F.normalize(z1, dim=1), F.normalize(z2, dim=1)])
    logits = z @ z.t() / temperature - 1e9 * torch.eye(2 * n)
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return -F.log_softmax(logits, dim=1)[torch.arange(2 * n), positives].mean()


def lambda_at(t, step):
    """schedule.ts lambdaAt: the hybrid's weight of the self-supervised term at an optimizer step."""
    sch, lam = t['lambdaSchedule'], t['lambda']
    if sch['kind'] == 'constant' or sch['steps'] == 0 or step >= sch['steps']:
        return lam
    f = step / sch['steps']
    w = f if sch['kind'] == 'linear' else 0.5 * (1 - math.cos(math.pi * f))
    return sch['start'] + (lam - sch['start']) * w


def sigmoid_cross_entropy(logits, targets, mask):
    """supervised-loss.ts: the mean over labelled rows of the mean over labels; 0 when no row is labelled."""
    per_row = (F.relu(logits) - logits * targets + torch.log1p(torch.exp(-logits.abs()))).mean(1)
    return (per_row * mask).sum() / mask.sum().clamp_min(1)


def learning_rate(o, step, total):
    """stages/train/schedule.ts learningRate."""
    warm, lr, min_lr, start = o.get('warmupSteps', 0), o.get('lr', 0.3), o.get('minLr', 0.0003), o.get('warmupStartLr', 0)
    if step < warm:
        return start + (lr - start) * step / warm
    t = min((step - warm) / max(total - warm, 1), 1)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--data', default='runs/peer', help='the folder peer-arms.js export wrote (runs/peer/<arm>[/seed-<s>])')
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = json.load(open(os.path.join(args.data, 'recipe.json')))
    t = recipe['train']
    objective = t['objective']
    # SwAV with one equipartition per batch: multi-modal clustering, or uni-modal over batches of one modality each
    # (the export checks that every batch is one modality), with shared prototypes and no queue.
    one_per_batch = t['clustering'] == 'multi-modal' or (recipe.get('equipartition') == 'batch' and not t['prototypesPerModality'])
    if objective in ('swav', 'hybrid') and (not one_per_batch or t['queue']['length'] != 0):
        sys.exit('peer-train: the peer runs swav with one equipartition per batch (multi-modal, or uni-modal over pure batches), shared prototypes, no queue')
    if objective not in ('swav', 'simclr', 'supervised', 'hybrid'):
        sys.exit(f'peer-train: the peer runs the swav, simclr, supervised and hybrid objectives, not {objective}')
    if t['optimizer']['name'] not in ('lars', 'sgd'):
        sys.exit('peer-train: the peer implements lars and sgd')
    model_cfg = {**recipe['model'], 'stem': recipe['spec']['stem']}
    model = peer.SwAV(model_cfg, recipe['channels'], padding_mode='tf')
    num_labels = recipe.get('numLabels', 0)
    if objective in ('supervised', 'hybrid'):
        # heads.ts addClassifierParams: a linear classifier on the pooled features (its init comes from init.bin).
        model.classifier = torch.nn.Linear(recipe['spec']['featureDim'], num_labels)
        labels_file = np.memmap(os.path.join(args.data, 'labels.bin'), dtype=np.uint8, mode='r')
        label_bytes = recipe['batchSize'] * (4 * num_labels + 1)
    if objective == 'supervised':
        # objectives/supervised.ts has no projection head and no prototypes: the model is the encoder and classifier.
        model.head, model.prototypes = None, None
    load_params(model, os.path.join(args.data, 'init'))
    model.train()
    opt = peer.make_optimizer(model, t['optimizer'])
    b, steps, views = recipe['batchSize'], recipe['steps'], recipe['views']
    sizes = list(dict.fromkeys(v['size'] for v in views))
    floats = [b * v['size'] * v['size'] * v['channels'] for v in views]
    per_step = sum(floats)
    crops = np.memmap(os.path.join(args.data, 'crops.bin'), dtype='<f4', mode='r')
    if crops.size != steps * per_step:
        sys.exit(f'peer-train: crops.bin holds {crops.size} floats, expected {steps} x {per_step}')
    freeze = t.get('freezePrototypesSteps', 0)
    t0, losses = time.time(), []
    for step in range(steps):
        lr = learning_rate(t['optimizer'], step, steps)
        for g in opt.param_groups:
            g['lr'] = lr
        base = step * per_step
        tensors, o = [], base
        for v, n in zip(views, floats):
            x = torch.from_numpy(np.array(crops[o:o + n])).view(b, v['size'], v['size'], v['channels']).permute(0, 3, 1, 2)
            tensors.append(x)
            o += n
        opt.zero_grad(set_to_none=True)
        globals_ = sum(1 for v in views if v['kind'] == 'global')
        if objective in ('supervised', 'hybrid'):
            raw = np.array(labels_file[step * label_bytes:(step + 1) * label_bytes])
            y = torch.from_numpy(raw[:4 * b * num_labels].view('<f4').reshape(b, num_labels).copy())
            m = torch.from_numpy(raw[4 * b * num_labels:].astype(np.float32))
        if objective == 'supervised':
            # objectives/supervised.ts: the global crops only, through the encoder as one batch (one resolution), the
            # classifier's sigmoid cross-entropy on their pooled features over the labelled rows.
            g = [x for x, v in zip(tensors, views) if v['kind'] == 'global']
            logits = model.classifier(model.encoder(torch.cat(g).contiguous()))
            loss = sigmoid_cross_entropy(logits, y.repeat(globals_, 1), m.repeat(globals_))
        elif objective == 'simclr':
            # objectives/simclr.ts: the first two global crops, through the encoder as one [2B] batch (one
            # resolution), their projections into NT-Xent; local crops are not forwarded.
            g = [x for x, v in zip(tensors, views) if v['kind'] == 'global'][:2]
            z = model.head(model.encoder(torch.cat(g).contiguous()))
            loss = nt_xent(z[:b], z[b:], t['temperature'])
        else:
            # One tensor per resolution, views in order (trainer.ts stackByResolution), as train-peer.py's Run does.
            by_res = [torch.cat([x for x, v in zip(tensors, views) if v['size'] == s]).contiguous() for s in sizes]
            feats = [model.encoder(x) for x in by_res]
            scores = model.prototypes(model.head(torch.cat(feats)))
            loss = peer.swav_loss(list(scores.split(b)), t['temperature'], t['epsilon'], t['sinkhornIterations'], t['cropsForAssign'])
            if objective == 'hybrid':
                # objectives/hybrid.ts: L_sup + lambda L_SwAV, L_sup on the global crops' pooled features (the first
                # resolution's rows), over the labelled rows of the batch.
                logits = model.classifier(feats[0][:globals_ * b])
                sup = sigmoid_cross_entropy(logits, y.repeat(globals_, 1), m.repeat(globals_))
                loss = sup + lambda_at(t, step) * loss
        loss.backward()
        if step < freeze and model.prototypes is not None:
            model.prototypes.weight.grad = None
        opt.step()
        if model.prototypes is not None:
            model.normalize_prototypes()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            print(f'peer-train: step {step + 1}/{steps}, loss {losses[-1]:.4f}, {(step + 1) * b / (time.time() - t0):.0f} images/s', file=sys.stderr, flush=True)
    save_params(model, os.path.join(args.data, 'peer'))
    json.dump({'steps': steps, 'batchSize': b, 'seconds': time.time() - t0, 'firstLoss': losses[0], 'lastLoss': losses[-1],
               'torch': torch.__version__, 'threads': torch.get_num_threads()},
              open(os.path.join(args.data, 'peer-run.json'), 'w'), indent=1)
    print(f'peer-train: {steps} steps in {time.time() - t0:.0f} s, loss {losses[0]:.4f} -> {losses[-1]:.4f}', file=sys.stderr)


if __name__ == '__main__':
    main()
