export * from './records.js';
export * from './metrics.js';
export * from './config.js';
export * from './encoder.js';
