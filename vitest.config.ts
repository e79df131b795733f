import { configDefaults, defineConfig } from 'vitest/config';

// `npm test`: every test/**/*.test.ts but the corpus tests, on fixtures/ only. The tests over the whole external
// corpus (../shared), *.corpus.test.ts, run with vitest.corpus.config.ts (`npm run test:corpus`).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: [...configDefaults.exclude, '**/*.corpus.test.ts'],
    // Native TensorFlow and the codecs' WebAssembly are large: forks isolate them per file.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // MEDSSL_TEST_SUITE: test/shared.ts refuses corpus paths in the default suite.
    env: { TF_CPP_MIN_LOG_LEVEL: '2', MEDSSL_TEST_SUITE: 'default' },
  },
});
