// The encoder that passes from pre-training (stages/train: exported, loaded) to evaluation (stages/evaluate: probed,
// fine-tuned): [N, H, W, C] images -> [N, D] pooled features, before any projection head.
import type { LayersModel } from '@tensorflow/tfjs';

export type Encoder = LayersModel;
