// Deterministic perturbations for the robustness probes. Pure functions: an image in, a new image out.
//
// Images are row-major with interleaved channels: index = (y * width + x) * channels + c.
// Geometry: pixel centres sit at integer coordinates and the centre of rotation/zoom is ((width-1)/2, (height-1)/2);
// each output pixel is the inverse-mapped source position, sampled bilinearly. Positions outside the source take
// `fill`: 'zero' (0, the background of normalised images: what a scanner outside its field of view shows) or 'edge'
// (the nearest border pixel, clamped coordinates).

export interface Image {
  data: Float32Array;
  height: number;
  width: number;
  channels: number;
}

export type Fill = 'zero' | 'edge';

/** One perturbation with its parameter, as recorded in results (e.g. { kind: 'rotate', value: 15 }). */
export type Perturbation =
  | { kind: 'scale'; value: number }
  | { kind: 'shift'; value: number }
  | { kind: 'gamma'; value: number }
  | { kind: 'rotate'; value: number }
  | { kind: 'zoom'; value: number };

/** The default grid: 2-3 strengths on each side of identity per family, stronger ones last. */
export const DEFAULT_GRID: Perturbation[] = [
  ...[0.6, 0.8, 1.2, 1.5].map((value) => ({ kind: 'scale', value }) as const),
  ...[-0.2, -0.1, 0.1, 0.2].map((value) => ({ kind: 'shift', value }) as const),
  ...[0.5, 0.7, 1.5, 2].map((value) => ({ kind: 'gamma', value }) as const),
  ...[5, 10, 20, 30].map((value) => ({ kind: 'rotate', value }) as const),
  ...[0.8, 0.9, 1.1, 1.25].map((value) => ({ kind: 'zoom', value }) as const),
];

/** Applies one perturbation (fill 'zero' for geometry). */
export function perturb(img: Image, p: Perturbation, fill: Fill = 'zero'): Image {
  switch (p.kind) {
    case 'scale': return intensityScaleShift(img, p.value, 0);
    case 'shift': return intensityScaleShift(img, 1, p.value);
    case 'gamma': return gamma(img, p.value);
    case 'rotate': return rotate(img, p.value, fill);
    case 'zoom': return zoom(img, p.value, fill);
  }
}

/** x -> scale * x + shift (a change of gain and offset, e.g. another detector or window). */
export function intensityScaleShift(img: Image, scale: number, shift: number): Image {
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = scale * img.data[i] + shift;
  return { ...img, data: out };
}

/**
 * x -> sign(x) |x|^g. On normalised [0, 1] intensities this is the usual gamma curve (fixes 0 and 1); the sign keeps
 * it defined and monotone for negative values.
 */
export function gamma(img: Image, g: number): Image {
  if (!(g > 0)) throw new RangeError(`gamma must be > 0, got ${g}`);
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) {
    const x = img.data[i];
    out[i] = x >= 0 ? Math.pow(x, g) : -Math.pow(-x, g);
  }
  return { ...img, data: out };
}

/** Rotation by `degrees` counter-clockwise as displayed (y axis pointing down), about the image centre. */
export function rotate(img: Image, degrees: number, fill: Fill = 'zero'): Image {
  const t = (degrees * Math.PI) / 180;
  const c = Math.cos(t), s = Math.sin(t);
  // Inverse map: source = R(-t) (dest - centre) + centre. With y down, a counter-clockwise display rotation by t maps
  // (dx, dy) to (c dx + s dy, -s dx + c dy); its inverse is (c dx - s dy, s dx + c dy).
  return resample(img, (dx, dy) => [c * dx - s * dy, s * dx + c * dy], fill);
}

/** Zoom by `factor` about the centre: > 1 magnifies (the field of view shrinks), < 1 shrinks (borders get `fill`). */
export function zoom(img: Image, factor: number, fill: Fill = 'zero'): Image {
  if (!(factor > 0)) throw new RangeError(`zoom factor must be > 0, got ${factor}`);
  return resample(img, (dx, dy) => [dx / factor, dy / factor], fill);
}

/** Inverse-mapping bilinear resampler; `inverse` maps centred destination offsets to centred source offsets. */
function resample(img: Image, inverse: (dx: number, dy: number) => [number, number], fill: Fill): Image {
  const { width: w, height: h, channels: ch, data } = img;
  const cx = (w - 1) / 2, cy = (h - 1) / 2;
  const out = new Float32Array(data.length);
  const at = (x: number, y: number, c: number): number => {
    if (x < 0 || y < 0 || x >= w || y >= h) {
      if (fill === 'zero') return 0;
      x = Math.min(w - 1, Math.max(0, x));
      y = Math.min(h - 1, Math.max(0, y));
    }
    return data[(y * w + x) * ch + c];
  };
  // Snap tiny floating-point residues (cos 90 degrees = 6e-17) so that exact grid positions sample exactly.
  const snap = (v: number) => (Math.abs(v - Math.round(v)) < 1e-9 ? Math.round(v) : v);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const [sx0, sy0] = inverse(x - cx, y - cy);
      const sx = snap(sx0 + cx), sy = snap(sy0 + cy);
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = sx - x0, fy = sy - y0;
      for (let c = 0; c < ch; c++) {
        // A source position outside [-1, size] has no in-image neighbour: pure fill.
        const v00 = at(x0, y0, c), v10 = fx ? at(x0 + 1, y0, c) : 0;
        const v01 = fy ? at(x0, y0 + 1, c) : 0, v11 = fx && fy ? at(x0 + 1, y0 + 1, c) : 0;
        out[(y * w + x) * ch + c] = (1 - fx) * (1 - fy) * v00 + fx * (1 - fy) * v10 + (1 - fx) * fy * v01 + fx * fy * v11;
      }
    }
  }
  return { ...img, data: out };
}

/** Short label for tables and plots, e.g. `rotate 15`. */
export function describePerturbation(p: Perturbation): string {
  return `${p.kind} ${p.value}`;
}
