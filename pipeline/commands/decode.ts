import fs from 'node:fs';
import type { Command } from 'commander';

// `medssl decode FILE --npy OUT.npy`: the decode stage on one file, for checking a file or a decoder by hand.
export function register(program: Command): void {
  program
    .command('decode')
    .description('decode one DICOM or NIfTI file: print its metadata as JSON, optionally write the stored values as .npy')
    .argument('<file>', 'a DICOM (.dcm, .dcm.gz, no extension) or NIfTI (.nii, .nii.gz, .hdr) file')
    .option('--npy <out>', 'write the stored values (before rescale) as a C-order little-endian .npy')
    .option('--json', 'print the metadata as one JSON object (the default; kept for symmetry with other commands)')
    .addHelpText('after', '\nExample:\n  $ medssl decode CT.dcm --npy ct.npy\n  {"file":"CT.dcm","format":"dicom","modality":"CT","rows":512,...}')
    .action(async (file: string, opts: { npy?: string }) => {
      // Imported lazily: `medssl --help` must not load the decode stage, and the codecs load only when needed.
      const { decodeFile } = await import('../../stages/decode/decode.js');
      const { writeNpy } = await import('../../stages/source/npy.js');
      const out = await decodeFile(file);
      if (opts.npy) fs.writeFileSync(opts.npy, writeNpy(out.data, out.shape));
      process.stdout.write(`${JSON.stringify(out.meta)}\n`);
    });
}
