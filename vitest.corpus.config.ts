import { configDefaults, defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run test:corpus` (through test/corpus.mjs): the *.corpus.test.ts files, over the whole external corpus at
// ../shared. Same pool, timeouts and environment as the default suite.
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/**/*.corpus.test.ts'],
    exclude: configDefaults.exclude,
    env: { ...base.test?.env, MEDSSL_TEST_SUITE: 'corpus' },
  },
});
