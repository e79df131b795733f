// The commented starting config that `medssl config init` writes. A test checks that it names every key of the schema
// and that every value it shows is the default (but the example inputs and datasets).
export const CONFIG_TEMPLATE = `# medssl configuration. Every key is optional: a missing key takes the default shown here.
# Relative paths are relative to this file. Check it with: medssl config check <this file>
# extends: [./base.yaml]      # config files merged under this one, in order (mappings key by key; this file wins)
seed: 0                       # every random decision derives from (seed, epoch, sample, crop, purpose)

data:
  inputs:                     # folders, files, manifests (.csv/.jsonl) and MedMNIST .npz archives
    - ./data
  maxFileBytes: 2147483648    # larger files are rejected before reading
  maxPixels: 67108864         # frames claiming more pixels are rejected from the header
  sliceAxis: 2                # volumes become 2-D slices along this voxel axis (0 = i, 1 = j, 2 = k)
  skipConstantFrames: true    # frames of one value (padding, empty mask slices) are not cached or trained on
  followLinks: within         # symbolic links in folders: within (targets inside the folder), all, or none
  privacyKeyFile: null        # file holding the secret (16+ bytes) of the patient/study/series keys; else MEDSSL_PRIVACY_KEY
  hashPaths: false            # true: input paths appear only as keyed hashes (cache, logs, reports)
  sampling:                   # how pre-training epochs draw from the pool (pipeline/compose/batches.ts)
    power: 1                  # modality m's share of an epoch ~ count_m^power (1: as in the pool, 0.5: square root, 0: equal)
    maxShare: 1               # no modality gets more than this share of an epoch
    epochImages: null         # images per epoch (null: the pool's size)
    pureBatches: false        # uni-modal clustering: every batch one modality (its equipartition spans the batch)

normalize:                    # formulas in stages/normalize/README.md
  ct:
    windows:                  # Hounsfield windows (center/width)
      - { center: 40, width: 80 }     # brain
      - { center: 80, width: 200 }    # subdural
      - { center: 600, width: 2800 }  # bone
    mode: random              # random: one window per sample and epoch; channels: one channel per window
  mr:
    percentiles: [0.5, 99.5]  # clip, then z-score inside the (Otsu) foreground
  radiography:
    percentiles: [0.5, 99.5]  # CR/DX/MG: MONOCHROME1 inverted, then percentile scaling to [0, 1]
  other:
    percentiles: [0.5, 99.5]  # modalities without a rule of their own
  spacing: null               # [row, col] mm to resample to, or null for the native grid
  channels: 1                 # 1 or 3 output channels

augment:                      # formulas and ranges in stages/augment/README.md
  global: { count: 2, size: 224, scale: [0.14, 1] }   # SwAV global crops: area fraction range
  local: { count: 6, size: 96, scale: [0.05, 0.14] }  # SwAV local crops
  ratio: [0.75, 1.3333333]    # aspect ratio range (log-uniform)
  flip: 0.5                   # horizontal flip probability
  energy: { p: 0.5, range: [0.7, 1.3], regional: false, regionSigma: [0.1, 0.3] }   # signal energy about the mean
  gamma: { p: 0.5, range: [0.7, 1.5] }
  linear: { p: 0.5, scale: [0.8, 1.2], shift: [-0.1, 0.1] }
  noise: { p: 0.5, sigma: [0, 0.05] }
  blur: { p: 0, sigma: [0.1, 1.5] }
  workers: 0                  # worker threads for augmentation; 0 = one per core

cache:                        # stages/cache/README.md
  path: null                  # LMDB cache folder; null = <run folder>/cache
  compression: false          # byte-shuffle + deflate: smaller, about 10x slower to replay
  readers: 1                  # reader threads for replay
  verify: true                # check every record's checksum on replay

model:                        # stages/train/README.md
  arch: resnet                # resnet18, resnet50, or resnet with the knobs below
  width: 16                   # channels of the first stage (64 in ResNet-18/50)
  depth: [1, 1, 1, 1]         # residual blocks per stage
  stem: null                  # imagenet (7x7/2 + max pool) or small (3x3/1); null: resnet follows the crops (small up to 96 px), resnet18/50 imagenet
  projection: { hidden: 256, out: 64 }
  prototypes: 64              # K

train:
  objective: swav             # swav, simclr, supervised or hybrid
  clustering: multi-modal     # multi-modal: one equipartition over mixed batches; uni-modal: one per modality
  prototypesPerModality: false
  epochs: 10
  batchSize: 64
  stepsPerEpoch: null         # null: the whole pool each epoch
  temperature: 0.1
  epsilon: 0.05               # Sinkhorn-Knopp entropy regularisation
  sinkhornIterations: 3
  cropsForAssign: [0, 1]      # crops whose codes are computed (the global crops)
  freezePrototypesSteps: 0
  queue: { length: 0, startEpoch: 0 }
  lambda: 1                   # hybrid: supervised + lambda * self-supervised
  lambdaSchedule: { kind: constant, start: 0, steps: 0 }
  optimizer:
    name: lars                # sgd, lars or adamw
    lr: 0.3
    minLr: 0.0003
    momentum: 0.9
    weightDecay: 0.000001     # not applied to batch-norm parameters and biases
    warmupSteps: 0
    warmupStartLr: 0
    larsEta: 0.001
    betas: [0.9, 0.999]       # adamw
    adamEpsilon: 0.00000001
  checkpointEverySteps: 0     # 0 = at the end of every epoch
  highWaterMark: 2            # batches the trainer may have waiting
  syncBatchNorm: true         # data-parallel (mpirun / srun): batch-norm statistics over every rank's rows
  alarm: { afterSteps: 50, window: 20, lossTolerance: 0.01, minPrototypeUsage: 0.05, maxCodeEntropy: 0.85 }   # collapse and uniform-codes alarms

evaluate:                     # stages/evaluate/README.md
  fractions: [1, 0.5, 0.25, 0.1]   # label fractions
  seeds: [0, 1, 2]
  protocols: [linear, finetune, knn]
  preset: quick               # quick (within 15 minutes on 2 cores), standard (its recipe: fixtures/experiment-standard.yaml) or full
  size: null                  # evaluate at size x size px (images resampled), e.g. the recipe's global crop size; null: as stored
  replicatePretraining: false # true: every seed pre-trains its own encoder (p-values then cover pre-training's spread)
  contrasts: []               # arm against arm by name, e.g. [{ arm: SwAV multi-modal, against: SwAV uni-modal }]
  scoreOn: test               # validation: score the validation split to choose a recipe (the test set untouched)
  datasets:                   # labelled MedMNIST-layout .npz files to evaluate on
    - { file: ./data/pneumoniamnist.npz, name: PneumoniaMNIST, modality: radiography }
  # Optional keys without a default (uncomment to use):
  # arms:                     # the rows of the table; absent = the paper's rows (PAPER_ARMS in stages/evaluate/experiment.ts)
  #                           # kinds: none, none-bn, random, simclr, swav-uni-modal, swav-target-modality, supervised,
  #                           # swav-multi-modal, hybrid
  #   - { name: no pre-training, kind: none }
  #   - { name: SwAV multi-modal, kind: swav-multi-modal, train: { objective: swav, clustering: multi-modal } }
  # budgetSeconds: 900        # the wall-clock budget the run is reported against, instead of the preset's
  # pretrainImages: 38400     # images every pre-training arm sees (steps x batch size), instead of the preset's
`;
